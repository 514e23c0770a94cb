"""The corpus plan: units from metadata cover exactly the documents a whole read gives, sources
that change are caught, bad records are named, and `hf:` data sets stream from local folders."""

import json
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.config import DataConfig
from harness.data.corpus import iter_documents, read_unit
from harness.data.plan import CorpusPlan, load_or_make_plan, make_plan


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def whole_jsonl(path):
    """(id, text) of every record, reading the file in one piece with its byte offsets."""
    out, offset = [], 0
    for line in path.read_bytes().splitlines(keepends=True):
        if line.strip():
            out.append((f"{path.name}@{offset}", json.loads(line)["text"]))
        offset += len(line)
    return out


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 300), min_size=1, max_size=60),
    blank_every=st.integers(2, 9),
    step=st.integers(1, 2000),
)
def test_jsonl_byte_ranges_hold_every_line_exactly_once(
    tmp_path_factory, lengths, blank_every, step
):
    import harness.data.plan as plan_module

    path = tmp_path_factory.mktemp("j") / "c.jsonl"
    lines = []
    for i, n in enumerate(lengths):
        lines.append(json.dumps({"text": "é" * (n % 7) + "x" * n}) + "\n")
        if i % blank_every == 0:
            lines.append("\n")
    path.write_text("".join(lines))
    old = plan_module.MIN_JSONL_RANGE
    plan_module.MIN_JSONL_RANGE = 1  # cut ranges of any size, down to a byte
    try:
        data = DataConfig(corpus=str(path), num_shards=1, unit_bytes=step)
        plan = make_plan(data)
    finally:
        plan_module.MIN_JSONL_RANGE = old
    got = [(d.id, d.text) for d in iter_documents(data, plan)]
    assert got == whole_jsonl(path)
    assert [u.start for u in plan.units][0] == 0 and plan.units[-1].end == path.stat().st_size


def test_plan_matches_the_documents_actually_read(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"text": f"doc {i}\n" * (1 + i % 5)} for i in range(500)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet", row_group_size=37)
    root = tmp_path / "tree"
    for i in range(40):
        (root / f"d{i % 4}").mkdir(parents=True, exist_ok=True)
        (root / f"d{i % 4}" / f"f{i:02d}.py").write_text(f"x = {i}\n" * (i + 1))
    for num_shards in (1, 3, 7, 64):
        data = DataConfig(corpus=str(tmp_path / "c.parquet"), num_shards=num_shards)
        plan = make_plan(data)
        assert [d.text for d in iter_documents(data, plan)] == [r["text"] for r in rows]
        assert [d.id for d in iter_documents(data, plan)] == [f"c.parquet/{i}" for i in range(500)]
        assert len(plan.units) <= min(num_shards, 14)  # 14 row groups
        folder = DataConfig(corpus=str(root), num_shards=num_shards)
        plan = make_plan(folder)
        expected = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py"))
        assert [d.id for d in iter_documents(folder, plan)] == expected
        assert min(num_shards, 40) // 2 <= len(plan.units) <= min(num_shards, 40)
        assert sum(u.nbytes for u in plan.units) == sum(
            p.stat().st_size for p in root.rglob("*.py")
        )


def test_units_are_bounded_by_unit_bytes(tmp_path):
    path = tmp_path / "big.jsonl"
    write_jsonl(path, [{"text": "y" * 1000} for _ in range(6000)])  # ~6 MB
    data = DataConfig(corpus=str(path), num_shards=1, unit_bytes=2 << 20)
    plan = make_plan(data)
    assert len(plan.units) == 3 and all(u.nbytes <= 2 << 20 for u in plan.units)
    assert len(list(iter_documents(data, plan))) == 6000


def test_max_documents_is_planned_without_reading_the_rest(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_jsonl(tmp_path / "a.jsonl", [{"text": f"a{i}"} for i in range(50)])
    pq.write_table(
        pa.Table.from_pylist([{"text": f"p{i}"} for i in range(50)]),
        tmp_path / "b.parquet",
        row_group_size=10,
    )
    data = DataConfig(
        corpus=[str(tmp_path / "a.jsonl"), str(tmp_path / "b.parquet")], max_documents=73
    )
    docs = list(iter_documents(data))
    assert [d.text for d in docs] == [f"a{i}" for i in range(50)] + [f"p{i}" for i in range(23)]
    assert len(make_plan(data).sources) == 2


def test_changed_added_or_removed_source_is_an_error_naming_it(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    for i in range(3):
        (root / f"f{i}.py").write_text(f"x = {i}\n")
    data = DataConfig(corpus=str(root))
    pinned = tmp_path / "scored"
    pinned.mkdir()
    (pinned / "manifest.json").write_text("{}")  # scoring finished: its shards must not mix
    plan = make_plan(data)
    (pinned / "plan.json").write_text(plan.to_json())
    assert load_or_make_plan(data, pinned).fingerprint == plan.fingerprint
    time.sleep(0.01)
    os.utime(root / "f1.py")
    with pytest.raises(ValueError, match=r"f1.py was modified .* score the corpus again"):
        load_or_make_plan(data, pinned)
    (pinned / "plan.json").write_text(make_plan(data).to_json())
    (root / "f2.py").write_text("x = 222\n")
    with pytest.raises(ValueError, match=r"f2.py changed size \(6 -> 8 bytes\)"):
        load_or_make_plan(data, pinned)
    (pinned / "plan.json").write_text(make_plan(data).to_json())
    (root / "f9.py").write_text("new = 1\n")
    with pytest.raises(ValueError, match=r"f9.py \(and 0 more\) appeared"):
        load_or_make_plan(data, pinned)
    (root / "f9.py").unlink()
    (root / "f0.py").unlink()
    with pytest.raises(ValueError, match="f0.py was removed"):
        load_or_make_plan(data, pinned)


def test_an_unfinished_scoring_is_planned_again_after_its_corpus_changed(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": f"a{i}"} for i in range(5)])
    data = DataConfig(corpus=str(tmp_path / "a.jsonl"))
    pinned = tmp_path / "scored"
    pinned.mkdir()
    (pinned / "plan.json").write_text(make_plan(data).to_json())  # no manifest: it stopped
    write_jsonl(tmp_path / "a.jsonl", [{"text": f"b{i}"} for i in range(7)])  # fixed
    assert load_or_make_plan(data, pinned).fingerprint == make_plan(data).fingerprint


def test_plan_round_trips_through_json(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": f"a{i}"} for i in range(5)])
    plan = make_plan(DataConfig(corpus=str(tmp_path / "a.jsonl")))
    again = CorpusPlan.from_json(plan.to_json())
    assert again.fingerprint == plan.fingerprint and again.units == plan.units


def test_bad_records_name_file_and_line_or_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n\n{"text": "ok"}\n{not json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:4: invalid JSON"):
        list(iter_documents(DataConfig(corpus=str(tmp_path / "bad.jsonl"))))
    (tmp_path / "short.jsonl").write_text('{"texts": ["a", "b"], "scores": [0.1]}\n')
    with pytest.raises(ValueError, match=r"short.jsonl:1: `texts` \(2\) and `scores` \(1\)"):
        list(iter_documents(DataConfig(corpus=str(tmp_path / "short.jsonl"))))
    pq.write_table(pa.table({"body": ["x"] * 30}), tmp_path / "nofield.parquet", row_group_size=10)
    with pytest.raises(ValueError, match=r"nofield.parquet row 0 has no string field 'text'"):
        list(iter_documents(DataConfig(corpus=str(tmp_path / "nofield.parquet"))))
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"text": [f"t{i}" * 50 for i in range(300)]}), good, row_group_size=100)
    data = DataConfig(corpus=str(good), num_shards=3)
    plan = make_plan(data)
    raw = bytearray(good.read_bytes())
    meta = __import__("pyarrow.parquet").parquet.ParquetFile(good).metadata
    col = meta.row_group(1).column(0)
    start = col.dictionary_page_offset or col.data_page_offset
    raw[start + 8 : start + 200] = b"\xff" * 192  # garble the second row group's pages
    good.write_bytes(bytes(raw))
    with pytest.raises(
        ValueError, match=r"good.parquet row group 1 \(rows from 100\) is unreadable"
    ):
        list(iter_documents(data, plan))
    last = [u for u in plan.units if u.start <= 2 < u.end][0]
    assert [d.id for d in read_unit(last, data)][-1] == "good.parquet/299"  # the rest is readable


def test_hf_saved_and_local_folder_data_sets_stream_by_unit(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = {"texts": [[f"l{i}\n", "m\n"] for i in range(300)], "scores": [[0.0, 0.5]] * 300}
    ds = datasets.Dataset.from_dict(rows)
    ds.save_to_disk(str(tmp_path / "saved"), num_shards=3)
    (tmp_path / "pq").mkdir()
    ds.to_parquet(str(tmp_path / "pq" / "train-00000.parquet"), batch_size=100)
    for spec, first_id in (
        (f"hf:{tmp_path / 'saved'}", f"{tmp_path / 'saved'}/data-00000-of-00003.arrow/0"),
        (f"hf:{tmp_path / 'pq'}", f"{tmp_path / 'pq'}/train-00000.parquet/0"),
    ):
        data = DataConfig(corpus=spec, num_shards=100)
        plan = make_plan(data)
        assert len(plan.units) == 3
        docs = list(iter_documents(data, plan))
        assert [d.texts for d in docs] == [tuple(t) for t in rows["texts"]]
        assert docs[0].id == first_id and docs[0].scores == (0.0, 0.5)
        assert len({d.id for d in docs}) == 300
    assert make_plan(DataConfig(corpus=f"hf:{tmp_path / 'pq'}@v1")).units  # a revision parses


def test_hub_name_fails_in_seconds_offline():
    start = time.time()
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE=1 and it is not in the local Hugging Face"):
        make_plan(DataConfig(corpus="hf:no-such-user/no-such-dataset@main"))
    assert time.time() - start < 30

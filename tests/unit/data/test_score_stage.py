"""Scoring on datatrove: coverage, schema, pass-through of scored data, reruns, bad shards."""

import json

import pytest

from harness.config import DataConfig
from harness.data.plan import make_plan
from harness.data.score_stage import (
    ScoringJob,
    iter_shard,
    pin_job,
    read_shard,
    score_corpus,
    shard_paths,
    shard_schema,
)

TEXTS = [f"x = {i}\n" + ("y=1\n" if i % 3 else "") for i in range(23)]


def folder_corpus(tmp_path, texts=TEXTS):
    root = tmp_path / "corpus"
    root.mkdir(exist_ok=True)
    for i, text in enumerate(texts):
        (root / f"f{i:03d}.py").write_text(text)
    return DataConfig(corpus=str(root), num_shards=5)


def score(data, folder, scorer="pep8", options=None):
    return score_corpus(make_plan(data), folder, data, scorer, options or {})


def rows_of(folder, manifest):
    return [r for p in shard_paths(folder, manifest) for r in read_shard(p)]


def test_every_document_scored_exactly_once_with_paper_schema(tmp_path):
    data = folder_corpus(tmp_path)
    manifest = score(data, tmp_path / "s")
    assert manifest.rows == 23 and manifest.job.num_shards == 5 and manifest.job.scorer == "pep8"
    rows = rows_of(tmp_path / "s", manifest)
    assert [r["id"] for r in rows] == [f"f{i:03d}.py" for i in range(23)]
    by_id = {r["id"]: r for r in rows}
    assert "".join(by_id["f001.py"]["texts"]) == TEXTS[1]
    assert by_id["f001.py"]["scores"][1] > 0  # "y=1" misses whitespace around '=' (E225)
    assert by_id["f000.py"]["scores"] == [0.0] and by_id["f000.py"]["num_sents"] == 1
    assert by_id["f001.py"]["avg_score"] == pytest.approx(sum(by_id["f001.py"]["scores"]) / 2)
    assert [s.rows for s in manifest.shards] == [
        len(read_shard(p)) for p in shard_paths(tmp_path / "s", manifest)
    ]
    assert manifest.text_bytes == sum(len(t.encode()) for t in TEXTS)


def test_output_loads_with_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    data = folder_corpus(tmp_path)
    score(data, tmp_path / "s")
    ds = datasets.load_dataset(
        "parquet",
        data_dir=str(tmp_path / "s" / "data"),
        split="train",
        cache_dir=str(tmp_path / "hf"),
    )
    assert sorted(ds["id"]) == [f"f{i:03d}.py" for i in range(23)]


def test_prescored_records_pass_through_unchanged(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(
        json.dumps({"texts": ["p\n", "q\n"], "scores": [0.5, 0.25]})
        + "\n"
        + json.dumps({"text": "z = 1\n"})
        + "\n"
    )
    data = DataConfig(corpus=str(path), num_shards=2)
    rows = rows_of(tmp_path / "s", score(data, tmp_path / "s"))
    assert rows[0]["texts"] == ["p\n", "q\n"] and rows[0]["scores"] == [0.5, 0.25]
    assert rows[0]["avg_score"] == 0.375 and rows[0]["id"] == "c.jsonl@0"
    assert rows[1]["texts"] == ["z = 1\n"] and rows[1]["scores"] == [0.0]


def test_rerun_redoes_only_unfinished_tasks_and_gives_the_same_files(tmp_path):
    data = folder_corpus(tmp_path)
    folder = tmp_path / "s"
    manifest = score(data, folder)
    paths = shard_paths(folder, manifest)
    before = {p: p.read_bytes() for p in paths}
    mtimes = {p: p.stat().st_mtime_ns for p in paths}
    # A worker killed in task 2: no manifest, no shard, no completion marker, a partial temp file.
    (folder / "manifest.json").unlink()
    paths[2].unlink()
    (folder / "datatrove" / "completions" / "00002").unlink()
    (folder / "data" / ".shard-00002-of-00005.parquet.tmp999").write_bytes(b"partial")
    score(data, folder)
    assert {p: p.read_bytes() for p in paths} == before
    assert all(p.stat().st_mtime_ns == mtimes[p] for p in paths if p != paths[2])
    assert (folder / "manifest.json").is_file()


def test_other_scorer_or_changed_corpus_in_same_folder_is_an_error(tmp_path):
    data = folder_corpus(tmp_path)
    score(data, tmp_path / "s")
    with pytest.raises(ValueError, match="scorer: folder has 'pep8'"):
        score(data, tmp_path / "s", "toxicity", {"backend": "profanity_check"})
    fewer = DataConfig(corpus=data.corpus, num_shards=5, max_documents=10)
    with pytest.raises(ValueError, match="corpus_fingerprint"):
        score(fewer, tmp_path / "s")


def test_only_rank_0_pins_the_job_and_sweeps_temporaries(tmp_path, monkeypatch):
    """Another rank waits for scoring.json and never deletes a temporary file: a sweep on every rank
    removed rank 0's `.plan.json.tmp<pid>` in flight and failed its rename (seen in CI)."""
    import threading

    import harness.data.executor as executor

    data = folder_corpus(tmp_path)
    plan = make_plan(data)
    job = ScoringJob("pep8", {}, plan.fingerprint, len(plan.units))
    folder = tmp_path / "s"
    folder.mkdir()
    in_flight = folder / ".plan.json.tmp99999"
    in_flight.write_text("rank 0 is writing this")

    def rank_0_publishes():
        (folder / "plan.json").write_text(plan.to_json())
        (folder / "scoring.json").write_text(json.dumps(job.to_dict()))

    timer = threading.Timer(0.8, rank_0_publishes)
    timer.start()
    monkeypatch.setattr(executor, "_rank_world", lambda: (1, 2))
    pin_job(folder, job, plan)
    timer.join()
    assert in_flight.is_file()
    monkeypatch.setattr(executor, "_rank_world", lambda: (0, 1))
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / ".plan.json.tmp99999").write_text("left by a killed run")
    pin_job(fresh, job, plan)
    assert sorted(p.name for p in fresh.iterdir()) == ["plan.json", "scoring.json"]


def test_corrupt_shard_and_bad_record_are_named(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    bad = tmp_path / "shard.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match="shard.parquet is corrupt"):
        read_shard(bad)
    row = {"id": "r7", "texts": ["a", "b"], "scores": [0.1], "avg_score": 0.1, "num_sents": 2}
    pq.write_table(pa.Table.from_pylist([row], schema=shard_schema()), tmp_path / "s.parquet")
    with pytest.raises(ValueError, match=r"row 0 \(id r7\): 2 texts but 1 scores"):
        list(iter_shard(tmp_path / "s.parquet"))


def test_a_failing_scorer_leaves_no_partial_shard(tmp_path):
    data = folder_corpus(tmp_path)
    with pytest.raises(ValueError, match="cannot import module"):
        score(data, tmp_path / "s", "no_such_pkg.Scorer")
    assert not list((tmp_path / "s" / "data").glob("*.parquet"))
    assert (tmp_path / "s" / "datatrove" / "errors").is_dir()

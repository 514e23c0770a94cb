"""make_synthetic_corpus.py: the same records in JSONL and Parquet, schema, sizes, determinism."""

import importlib.util
import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "make_synthetic_corpus.py"
SIZE = 300_000


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("make_synthetic_corpus", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_jsonl(folder: Path) -> list[dict]:
    lines = [ln for p in sorted(folder.glob("*.jsonl")) for ln in p.read_text().splitlines()]
    for line in lines:  # the hand-built lines are exactly what json.dumps writes
        assert json.dumps(json.loads(line)) == line
    return [json.loads(line) for line in lines]


def read_parquet(folder: Path) -> list[dict]:
    return [r for p in sorted(folder.glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def run(gen, out: Path, *extra: str, size: int = SIZE) -> dict:
    assert gen.main(["--out", str(out), "--size", str(size), *extra]) == 0
    return json.loads((out / "corpus.json").read_text())


@pytest.fixture(scope="module")
def both(gen, tmp_path_factory):
    out = tmp_path_factory.mktemp("both")
    return out, run(gen, out, "--format", "both", "--file_size", "30KB")


def text_bytes(record: dict) -> int:
    return len("".join(record["texts"]).encode("utf-8"))


def test_jsonl_and_parquet_hold_the_same_scored_records(both):
    out, meta = both
    records = read_jsonl(out / "jsonl")
    assert records == read_parquet(out / "parquet")
    assert len(records) == meta["documents"] and meta["scored"] and meta["kind"] == "code"
    assert len({r["id"] for r in records}) == len(records)
    assert len({"".join(r["texts"]) for r in records}) == len(records)  # every copy differs
    for r in records:
        assert set(r) == {"id", "texts", "scores", "avg_score", "num_sents"}
        assert r["num_sents"] == len(r["texts"]) == len(r["scores"]) > 0
        assert r["avg_score"] == math.fsum(r["scores"]) / len(r["scores"])
        assert all(s >= 0.0 for s in r["scores"]) and any(s > 0.0 for s in r["scores"])
        assert "".join(r["texts"]).splitlines(keepends=True) == r["texts"]  # segments are lines
    schema = pq.read_schema(out / "parquet" / "part-00000.parquet")
    assert str(schema.field("texts").type) == "list<element: string>"
    assert str(schema.field("scores").type) == "list<element: double>"
    assert str(schema.field("num_sents").type) == "int64"


def test_size_and_file_split(both):
    out, meta = both
    records = read_jsonl(out / "jsonl")
    total = sum(map(text_bytes, records))
    assert total == meta["size_bytes"]
    assert SIZE <= total < SIZE + text_bytes(records[-1])  # stops at the first doc reaching it
    parts = sorted((out / "jsonl").glob("part-*.jsonl"))
    assert len(parts) >= 3 and [f"jsonl/{p.name}" for p in parts] == meta["files"][::2]
    assert len(list((out / "parquet").glob("part-*.parquet"))) == len(parts)
    for p in parts[:-1]:  # every part but the last holds at least --file_size of text
        assert sum(text_bytes(json.loads(ln)) for ln in p.read_text().splitlines()) >= 30_000
    assert not list(out.rglob(".*tmp*"))  # no temporary files left


def test_same_arguments_give_identical_files(gen, both, tmp_path):
    out, _ = both
    run(gen, tmp_path / "a", "--format", "both", "--file_size", "30KB")
    names = sorted(p.relative_to(out) for p in out.rglob("*.*"))
    assert names == sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert len(names) > 4
    for name in names:
        assert (out / name).read_bytes() == (tmp_path / "a" / name).read_bytes(), name
    run(gen, tmp_path / "b", "--seed", "1", "--size", "50KB")
    assert read_jsonl(tmp_path / "b" / "jsonl")[0] != read_jsonl(out / "jsonl")[0]


def test_unscored_schema_and_stale_parts_removed(gen, tmp_path):
    run(gen, tmp_path, "--format", "both", "--unscored", "--file_size", "30KB", size=100_000)
    assert len(list((tmp_path / "jsonl").glob("*.jsonl"))) > 1
    meta = run(gen, tmp_path, "--format", "both", "--unscored", size=100_000)
    assert len(meta["files"]) == 2 and not meta["scored"]
    records = read_jsonl(tmp_path / "jsonl")
    assert records == read_parquet(tmp_path / "parquet")
    assert all(set(r) == {"id", "text"} and r["text"] for r in records)
    assert pq.read_schema(tmp_path / "parquet" / "part-00000.parquet").names == ["id", "text"]
    assert sum(len(r["text"].encode()) for r in records) >= 100_000


def test_prose_and_mixed(gen, tmp_path):
    run(gen, tmp_path / "prose", "--kind", "prose", size=200_000)
    records = read_jsonl(tmp_path / "prose" / "jsonl")
    assert all(r["id"].startswith("prose-") for r in records)
    assert any(ord(c) > 255 for r in records for t in r["texts"] for c in t)
    assert all(r["num_sents"] == len(r["texts"]) == len(r["scores"]) for r in records)
    run(gen, tmp_path / "mixed", "--kind", "mixed", "--format", "parquet", size=200_000)
    ids = [r["id"] for r in read_parquet(tmp_path / "mixed" / "parquet")]
    assert ids[0].startswith("code-") and ids[1].startswith("prose-") and len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    "text, value",
    [("400MB", 400 * 10**6), ("4GB", 4 * 10**9), ("1.5GB", 1_500_000_000), ("1000000", 10**6)]
    + [("10KB", 10_000), ("128mb", 128 * 10**6)],
)
def test_parse_size(gen, text, value):
    assert gen.parse_size(text) == value


@pytest.mark.parametrize("text", ["", "MB", "-1MB", "4TB", "0"])
def test_parse_size_rejects(gen, text):
    with pytest.raises(Exception, match="bad size"):
        gen.parse_size(text)

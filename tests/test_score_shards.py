"""Scoring shards: coverage, schema, pass-through of scored data, reruns and bad shards."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.data.corpus import Document
from harness.scoring.shards import read_shard, score_shards, shard_bounds, shard_paths, write_shard

DOCS = [Document(f"doc{i}", f"x = {i}\n" + ("y=1\n" if i % 3 else "")) for i in range(23)]


@given(st.integers(0, 500), st.integers(1, 64))
def test_shard_bounds_cover_every_document_once(n, k):
    bounds = shard_bounds(n, k)
    assert len(bounds) == k
    covered = [i for lo, hi in bounds for i in range(lo, hi)]
    assert covered == list(range(n))


def test_every_document_scored_exactly_once_with_paper_schema(tmp_path):
    manifest = score_shards(DOCS, "fp1", tmp_path, 5, "pep8", {}, progress=False)
    assert manifest["rows"] == 23 and manifest["num_shards"] == 5 and manifest["scorer"] == "pep8"
    rows = [r for p in shard_paths(tmp_path, manifest) for r in read_shard(p)]
    assert [r["id"] for r in rows] == [d.id for d in DOCS]
    by_id = {r["id"]: r for r in rows}
    assert "".join(by_id["doc1"]["texts"]) == DOCS[1].text
    assert by_id["doc1"]["scores"][1] > 0  # "y=1" misses whitespace around '=' (E225)
    assert by_id["doc0"]["scores"] == [0.0] and by_id["doc0"]["num_sents"] == 1
    assert by_id["doc1"]["avg_score"] == pytest.approx(sum(by_id["doc1"]["scores"]) / 2)


def test_output_loads_with_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    score_shards(DOCS, "fp1", tmp_path, 4, "pep8", {}, progress=False)
    ds = datasets.load_dataset(
        "parquet", data_dir=str(tmp_path / "data"), split="train", cache_dir=str(tmp_path / "hf")
    )
    assert sorted(ds["id"]) == sorted(d.id for d in DOCS)


def test_prescored_documents_pass_through_unchanged(tmp_path):
    docs = [Document("a", "p\nq\n", ("p\n", "q\n"), (0.5, 0.25)), Document("b", "z = 1\n")]
    manifest = score_shards(docs, "fp2", tmp_path, 2, "pep8", {}, progress=False)
    rows = [r for p in shard_paths(tmp_path, manifest) for r in read_shard(p)]
    assert (
        rows[0]["texts"] == ["p\n", "q\n"]
        and rows[0]["scores"] == [0.5, 0.25]
        and rows[0]["avg_score"] == 0.375
    )


def test_rerun_skips_finished_shards_and_completes_missing_ones(tmp_path):
    manifest = score_shards(DOCS, "fp1", tmp_path, 5, "pep8", {}, progress=False)
    paths = shard_paths(tmp_path, manifest)
    mtimes = {p: p.stat().st_mtime_ns for p in paths}
    (tmp_path / "manifest.json").unlink()
    paths[2].unlink()
    (tmp_path / "data" / ".shard-00003-of-00005.parquet.tmp999").write_bytes(
        b"partial"
    )  # a killed writer's leftover
    score_shards(DOCS, "fp1", tmp_path, 5, "pep8", {}, progress=False)
    assert paths[2].is_file()
    assert all(p.stat().st_mtime_ns == mtimes[p] for p in paths if p != paths[2])
    assert not list((tmp_path / "data").glob(".*tmp*"))
    rows = [r for p in paths for r in read_shard(p)]
    assert [r["id"] for r in rows] == [d.id for d in DOCS]


def test_other_scorer_or_corpus_in_same_folder_is_an_error(tmp_path):
    score_shards(DOCS, "fp1", tmp_path, 5, "pep8", {}, progress=False)
    with pytest.raises(ValueError, match="scorer: folder has 'pep8'"):
        score_shards(
            DOCS, "fp1", tmp_path, 5, "toxicity", {"backend": "profanity_check"}, progress=False
        )
    with pytest.raises(ValueError, match="corpus_fingerprint"):
        score_shards(DOCS[:10], "fp-other", tmp_path, 5, "pep8", {}, progress=False)


def test_corrupt_shard_and_bad_record_are_named(tmp_path):
    bad = tmp_path / "shard.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match="shard.parquet is corrupt"):
        read_shard(bad)
    write_shard(
        tmp_path / "s.parquet",
        [{"id": "r7", "texts": ["a", "b"], "scores": [0.1], "avg_score": 0.1, "num_sents": 2}],
    )
    with pytest.raises(ValueError, match=r"record 0 \(id r7\): 2 texts but 1 scores"):
        read_shard(tmp_path / "s.parquet")


def test_manifest_lists_rows_per_shard(tmp_path):
    score_shards(DOCS, "fp1", tmp_path, 3, "pep8", {}, progress=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [s["rows"] for s in manifest["shards"]] == [7, 8, 8]


def test_balanced_assignment_is_deterministic_and_covers_each_shard_once():
    from harness.scoring.shards import balanced_assignment

    sizes = [5, 1, 1, 1, 1, 1, 100, 2]
    parts = balanced_assignment(list(range(8)), sizes, 2)
    assert sorted(k for p in parts for k in p) == list(range(8))
    assert parts == balanced_assignment(list(range(8)), sizes, 2)
    assert parts[0] == [6]  # the huge shard alone on one rank, the rest on the other
    assert balanced_assignment([1, 3], sizes, 3) == [[1], [3], []]

"""Packing once: every split in one pass, parts read in place, dedup by digest, the BPE sample,
and the same files from 1 or 2 workers and after a task is redone."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.data.bpe import bpe_sample
from harness.data.buckets import is_heldout
from harness.data.packing import PackedBlocks, pack_blocks
from harness.data.pipeline import plan_corpus, prepare_data
from harness.data.score_stage import ScoringManifest, read_shard, shard_paths
from harness.objectives import build_objective
from harness.run_config import parse_config

ROOT = Path(__file__).resolve().parents[3]


def make_cfg(tmp_path, *extra):
    corpus = tmp_path / "corpus"
    if not corpus.exists():
        corpus.mkdir()
        for i in range(60):
            body = "".join(f"def f{i}_{j}(x):\n    return x+{j}\n" for j in range(i % 9 + 1))
            (corpus / f"m{i:02d}.py").write_text(body)
    args = [
        "--config",
        str(ROOT / "configs" / "quickstart.yaml"),
        "--data.corpus",
        str(corpus),
        "--data.max_documents",
        "null",
        "--data.num_shards",
        "6",
        "--data.vocab_size",
        "400",
        "--data.seq_len",
        "16",
        "--data.heldout_fraction",
        "0.2",
        "--data.cache_dir",
        str(tmp_path / "cache"),
        *extra,
    ]
    return parse_config(args)


def bundle(cfg):
    return prepare_data(cfg, build_objective(cfg.objective, cfg.run.seed))


def all_blocks(blocks):
    return blocks[list(range(len(blocks)))]


def file_digests(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file() and not any(part.startswith("datatrove") for part in p.parts)
    }


def test_one_pass_writes_every_split_as_per_shard_packing_would(tmp_path):
    cfg = make_cfg(tmp_path)
    data = bundle(cfg)
    manifest = ScoringManifest.read(data.scored_dir)
    shards = shard_paths(data.scored_dir, manifest)
    assert len(shards) == 6
    for split, heldout in (("train", False), ("heldout", True)):
        expected_tokens = []
        for k, shard in enumerate(shards):
            recs = [r for r in read_shard(shard) if is_heldout(r["id"], 0.2) == heldout]
            part = PackedBlocks(
                pack_blocks(recs, data.tokenizer, 16, tmp_path / f"ref-{split}-{k}")
            )
            expected_tokens.append(all_blocks(part)[0])
        blocks = data.train if split == "train" else data.heldout
        tokens, scores = all_blocks(blocks)
        assert np.array_equal(tokens, np.concatenate(expected_tokens))
        assert scores.shape == tokens.shape and tokens.dtype == np.int64
    assert len(data.train) > 10 * len(data.heldout) / 4 > 0
    meta = json.loads((data.packed_dir / "meta.json").read_text())
    assert [p["path"] for p in meta["splits"]["train"]["parts"]][:2] == [
        "parts/part-00000/train",
        "parts/part-00001/train",
    ]


def test_parts_are_read_in_place_through_offsets(tmp_path):
    data = bundle(make_cfg(tmp_path))
    blocks = data.train
    tokens, scores = all_blocks(blocks)
    n = len(blocks)
    for i in (0, 1, n // 2, n - 1, -1):
        assert np.array_equal(blocks[i][0], tokens[i])
    picked = blocks[[n - 1, 0, n // 2]]
    assert np.array_equal(picked[0], tokens[[n - 1, 0, n // 2]])
    with pytest.raises(IndexError):
        blocks[n]


def test_conditional_heldout_split_is_labelled_without_drops(tmp_path):
    """One held-out split, in heldout_treatment(): every segment behind its true control token,
    whatever objective.drop_token_fraction does to the training split."""
    cfg = make_cfg(
        tmp_path,
        "--objective.name",
        "conditional",
        "--objective.threshold",
        "0.0",
        "--objective.drop_token_fraction",
        "0.5",
    )
    data = bundle(cfg)
    treat, _ = build_objective(cfg.objective, cfg.run.seed).heldout_treatment()
    manifest = ScoringManifest.read(data.scored_dir)
    expected = []
    for k, shard in enumerate(shard_paths(data.scored_dir, manifest)):
        recs = [r for r in read_shard(shard) if is_heldout(r["id"], 0.2)]
        ref = PackedBlocks(pack_blocks(recs, data.tokenizer, 16, tmp_path / f"ref-{k}", treat))
        expected.append(all_blocks(ref)[0])
    heldout, train = all_blocks(data.heldout)[0], all_blocks(data.train)[0]
    assert np.array_equal(heldout, np.concatenate(expected))
    control = data.tokenizer.convert_tokens_to_ids(["<|aligned|>", "<|misaligned|>"])
    # training drops half of the control tokens; held-out text keeps them all
    assert np.isin(heldout, control).mean() > np.isin(train, control).mean() > 0
    meta = json.loads((data.packed_dir / "meta.json").read_text())
    assert set(meta["splits"]) == {"train", "heldout"}


def test_dedup_keeps_the_first_copy_by_digest(tmp_path):
    cfg = make_cfg(tmp_path)
    corpus = Path(cfg.data.corpus)
    for i in range(60, 75):  # copies of earlier files, sorted after them (other shards)
        (corpus / f"m{i:02d}.py").write_text((corpus / f"m{i - 60:02d}.py").read_text())
    plain = bundle(make_cfg(tmp_path))
    deduped = bundle(make_cfg(tmp_path, "--data.dedup", "true"))
    docs = lambda d: d.train.meta["num_documents"] + d.heldout.meta["num_documents"]  # noqa: E731
    assert docs(plain) == 75 and docs(deduped) == 60
    mask = np.load(deduped.scored_dir / "dedup-keep.npy")
    assert mask.tolist() == [True] * 60 + [False] * 15


def test_bpe_sample_is_bounded_and_whole_when_the_corpus_is_small():
    recs = [{"id": f"d{i}", "texts": ["x" * 100]} for i in range(1000)]
    everything = list(bpe_sample(recs, lambda r: True, 100_000, 10**9))
    assert len(everything) == 1000
    some = list(bpe_sample(recs, lambda r: True, 100_000, 20_000))
    assert 150 <= len(some) <= 200 and sum(map(len, some)) <= 20_000 + 100
    assert some == list(bpe_sample(recs, lambda r: True, 100_000, 20_000))  # by id hash


def test_a_redone_task_and_two_workers_give_the_same_files(tmp_path):
    from harness.data.prepare import ClusterOptions, prepare

    cfg = make_cfg(tmp_path)
    first = bundle(cfg)
    scored, packed = file_digests(first.scored_dir), file_digests(first.packed_dir)
    # Task 3 of packing killed: its part and completion marker gone, meta.json never written.
    shutil.rmtree(first.packed_dir / "parts" / "part-00003")
    (first.packed_dir / "datatrove" / "completions" / "00003").unlink()
    (first.packed_dir / "meta.json").unlink()
    again = bundle(cfg)
    assert file_digests(again.packed_dir) == packed
    # A fresh cache prepared by two local workers: the same bytes.
    other = make_cfg(tmp_path, "--data.cache_dir", str(tmp_path / "cache2"))
    prepare(other, ClusterOptions(executor="local", workers=2))
    two = bundle(other)
    assert file_digests(two.scored_dir) == scored
    assert file_digests(two.packed_dir) == packed


def test_only_a_bounded_number_of_parts_stays_mapped(tmp_path, monkeypatch):
    import harness.data.packing as packing

    data = bundle(make_cfg(tmp_path))
    expected = all_blocks(data.train)[0]
    monkeypatch.setattr(packing, "OPEN_PARTS", 2)
    blocks = PackedBlocks(data.packed_dir, "train")
    order = np.random.default_rng(0).permutation(len(blocks))
    assert np.array_equal(blocks[order.tolist()][0], expected[order])
    assert sum(p._maps is not None for p in blocks._parts) <= 2 < len(blocks._parts)


def test_select_window_splits_documents_at_their_first_token():
    from harness.data.prefix import select_window

    counts = np.array([5, 5, 5, 5])  # documents start at tokens 0, 5, 10, 15
    assert select_window(counts, None, None) == (0, 4)
    assert select_window(counts, None, 6) == (0, 2)  # token 5 starts the second document
    assert select_window(counts, 6, None) == (2, 4)  # ... so skipping 6 skips both
    assert select_window(counts, 5, None) == (1, 4)
    assert select_window(counts, 5, 5) == (1, 2)  # take counts from the first kept document
    with pytest.raises(ValueError, match=r"data.skip_tokens=20 .* has 20 tokens in 4 documents"):
        select_window(counts, 20, None)


def test_skip_and_take_tokens_split_the_training_documents(tmp_path):
    full = bundle(make_cfg(tmp_path))
    total = json.loads((full.packed_dir / "meta.json").read_text())["splits"]["train"]
    n = total["num_tokens"] // 3
    take = bundle(make_cfg(tmp_path, "--data.take_tokens", str(n)))
    skip = bundle(make_cfg(tmp_path, "--data.skip_tokens", str(n)))
    meta = {
        name: json.loads((b.packed_dir / "meta.json").read_text())["splits"]
        for name, b in (("full", full), ("take", take), ("skip", skip))
    }
    docs = {name: m["train"]["num_documents"] for name, m in meta.items()}
    assert 0 < docs["take"] < docs["full"] and docs["take"] + docs["skip"] == docs["full"]
    # the prefix is about n tokens (whole documents), the held-out split untouched
    assert n <= meta["take"]["train"]["num_tokens"] + meta["take"]["train"]["dropped_tail_tokens"]
    for prefixed in (take, skip):
        assert np.array_equal(all_blocks(full.heldout)[0], all_blocks(prefixed.heldout)[0])
    # per shard, the taken documents come first and the skipped ones are the rest
    for part_take, part_skip, part_full in zip(
        meta["take"]["train"]["parts"],
        meta["skip"]["train"]["parts"],
        meta["full"]["train"]["parts"],
        strict=True,
    ):
        assert part_take["num_documents"] + part_skip["num_documents"] == part_full["num_documents"]
    counts = sorted(take.packed_dir.parent.glob("counts-*/shard-*.npy"))
    assert len(counts) == 6  # counted once, shared by both prefixes
    # past the last document's first token: found by the counts, before packing
    every = total["num_tokens"] + total["dropped_tail_tokens"]
    with pytest.raises(ValueError, match="data.skip_tokens=.* leave no training document"):
        bundle(make_cfg(tmp_path, "--data.skip_tokens", str(every)))


def test_skip_tokens_beyond_the_corpus_size_fails_before_scoring(tmp_path):
    make_cfg(tmp_path)  # writes the corpus: 60 files
    bound = sum(f.stat().st_size for f in (tmp_path / "corpus").iterdir()) + 60  # text + EOS
    with pytest.raises(ValueError, match=f"data.skip_tokens={bound} leaves no training document"):
        bundle(make_cfg(tmp_path, "--data.skip_tokens", str(bound)))
    with pytest.raises(ValueError, match=f"data.skip_tokens={bound} leaves"):  # prepare.py's path
        plan_corpus(make_cfg(tmp_path, "--data.skip_tokens", str(bound)))
    assert not list((tmp_path / "cache").glob("scored/*/manifest.json"))  # nothing scored
    with pytest.raises(ValueError, match="leave no training document"):  # one below: counted
        bundle(make_cfg(tmp_path, "--data.skip_tokens", str(bound - 1)))


def test_pack_spec_and_scoring_manifest_round_trip_through_json(tmp_path):
    from harness.data.pack_stage import PackSpec, pack_spec
    from harness.data.score_stage import ScoringJob, ShardCount
    from harness.objectives import build_objective
    from harness.run_config import parse_config

    cfg = parse_config(
        ["--train.max_steps", "1", "--data.take_tokens", "1000", "--objective.name", "conditional"]
        + ["--objective.threshold", "0.0"]
    )
    objective = build_objective(cfg.objective, cfg.run.seed)
    spec = pack_spec(
        cfg, tmp_path / "scored", 3, tmp_path / "out", "tok.json", objective, tmp_path / "c"
    )
    assert len(spec.shards) == 3 and spec.control_tokens and spec.take_tokens == 1000
    assert PackSpec.from_json(spec.to_json()) == spec
    manifest = ScoringManifest(
        ScoringJob("pep8", {}, "fp", 2),
        (ShardCount("a.parquet", 3, 30), ShardCount("b.parquet", 4, 41)),
    )
    assert (manifest.rows, manifest.text_bytes) == (7, 71)
    raw = json.loads(manifest.to_json())  # the format manifest.json always had: job keys at the top
    assert (
        raw["corpus_fingerprint"] == "fp"
        and raw["rows"] == 7
        and raw["shards"][1]["file"] == "b.parquet"
    )
    assert ScoringManifest.from_json(manifest.to_json()) == manifest


def test_prepare_flags_are_the_cluster_options_fields(capsys):
    """scripts/prepare.py is configured one way: a flag per ClusterOptions field (docstring as help)."""
    from dataclasses import fields

    from harness.cli.train import prepare_main
    from harness.data.prepare import ClusterOptions

    assert ClusterOptions(workers=0).problems() == [
        "--workers must be >= 1 (or -1: no limit), got 0"
    ]
    assert ClusterOptions(workers=-1).problems() == []
    with pytest.raises(SystemExit):
        prepare_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in fields(ClusterOptions):
        if f.name != "sbatch_args":
            assert f"--{f.name}" in text
    assert "slurm: time limit of one task" in text  # the field's docstring is its help

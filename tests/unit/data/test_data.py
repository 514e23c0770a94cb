"""Corpora, tokenizer, packing and the resumable loader."""

import json

import numpy as np
import pytest

from harness.config import DataConfig
from harness.data.buckets import is_heldout
from harness.data.corpus import iter_documents
from harness.data.loader import BlockLoader, LoaderState
from harness.data.packing import PackedBlocks, pack_blocks
from harness.data.plan import make_plan
from harness.tokenizer import EOS, load_tokenizer, train_bpe

TEXTS = [
    "def add(a, b):\n    return a + b\n",
    "class Point:\n    x: int = 0\n    y: int = 0\n",
    "import os\nprint(os.getcwd())\n",
    "for i in range(10):\n    print(i * i)\n",
] * 5


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_bpe(TEXTS, vocab_size=320, out_file=path)
    return load_tokenizer(path)


def load_documents(data):
    return list(iter_documents(data))


def fingerprint(data):
    return make_plan(data).fingerprint


def test_folder_corpus_is_sorted_and_skips_empty(tmp_path):
    (tmp_path / "b.py").write_text("x = 1\n")
    (tmp_path / "a.py").write_text("y = 2\n")
    (tmp_path / "empty.py").write_text("\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.py").write_text("z = 3\n")
    data = DataConfig(corpus=str(tmp_path))
    docs = load_documents(data)
    assert [d.id for d in docs] == ["a.py", "b.py", "sub/c.py"]
    before = fingerprint(data)
    assert before == fingerprint(data)
    (tmp_path / "a.py").write_text("y = 33\n")  # the plan sees the size (and mtime) change
    assert fingerprint(data) != before


def test_jsonl_and_parquet_corpora(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"id": f"d{i}", "text": t} for i, t in enumerate(TEXTS[:4])]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet")
    for name in ("c.jsonl", "c.parquet"):
        docs = load_documents(DataConfig(corpus=str(tmp_path / name)))
        assert [d.text for d in docs] == TEXTS[:4]
    scored = [{"texts": ["a\n", "b\n"], "scores": [0.0, 0.5]}]
    (tmp_path / "s.jsonl").write_text(json.dumps(scored[0]) + "\n")
    doc = load_documents(DataConfig(corpus=str(tmp_path / "s.jsonl")))[0]
    assert doc.text == "a\nb\n" and doc.texts == ("a\n", "b\n") and doc.scores == (0.0, 0.5)


def test_bad_corpus_inputs_name_the_culprit(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_documents(DataConfig(corpus=str(tmp_path / "missing.jsonl")))
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{not json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        load_documents(DataConfig(corpus=str(tmp_path / "bad.jsonl")))
    (tmp_path / "nofield.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(ValueError, match="'text'"):
        load_documents(DataConfig(corpus=str(tmp_path / "nofield.jsonl")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no documents"):
        load_documents(DataConfig(corpus=str(tmp_path / "empty")))
    (tmp_path / "blank.jsonl").write_text("\n\n")
    with pytest.raises(ValueError, match="blank.jsonl bytes 0-2\\) yielded no documents"):
        load_documents(DataConfig(corpus=str(tmp_path / "blank.jsonl")))


def test_stdlib_corpus_is_deterministic():
    docs = load_documents(DataConfig(corpus="stdlib", max_documents=5))
    assert len(docs) == 5 and all(d.id.startswith("stdlib/") for d in docs)
    assert [d.id for d in docs] == sorted(d.id for d in docs)


def test_folder_corpus_skips_long_documents_and_exact_copies(tmp_path):
    for name, text in [
        ("a/copyright", "GPL text\n"),
        ("b/copyright", "GPL text\n"),
        ("c/copyright", "x" * 50),
        ("d/copyright", "MIT text\n"),
        ("e/README", "not matched\n"),
    ]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    base = {"corpus": str(tmp_path), "file_glob": "*/copyright"}
    assert [d.id for d in load_documents(DataConfig(**base))] == [
        "a/copyright",
        "b/copyright",
        "c/copyright",
        "d/copyright",
    ]
    kept = load_documents(DataConfig(**base, max_document_chars=20))
    assert [d.id for d in kept] == ["a/copyright", "b/copyright", "d/copyright"]
    # max_documents counts records in corpus order, before any is skipped
    kept = load_documents(DataConfig(**base, max_documents=3, max_document_chars=20))
    assert [d.id for d in kept] == ["a/copyright", "b/copyright"]


def test_heldout_split_is_deterministic_and_about_the_fraction():
    ids = [f"doc{i}" for i in range(4000)]
    held = [i for i in ids if is_heldout(i, 0.05)]
    assert held == [i for i in ids if is_heldout(i, 0.05)]
    assert 150 < len(held) < 250
    assert not any(is_heldout(i, 0.0) for i in ids)


def test_trained_tokenizer_round_trips(tok):
    assert tok.eos_token == EOS
    for text in TEXTS[:4] + ["naïve ünïcode ✓\n\ttabs"]:
        assert tok.decode(tok.encode(text)) == text


def test_pack_round_trip_tokens_and_scores_line_up(tok, tmp_path):
    records = [
        {"texts": ["def f():\n", "    return 1\n"], "scores": [0.25, 0.0]},
        {"texts": ["x=1\n"], "scores": [0.5]},
    ] * 10
    folder = pack_blocks(records, tok, seq_len=16, out_dir=tmp_path / "packed")
    blocks = PackedBlocks(folder)
    stream = np.concatenate([blocks[i][0] for i in range(len(blocks))])
    scores = np.concatenate([blocks[i][1] for i in range(len(blocks))])
    assert blocks.meta["num_tokens"] == len(stream) + blocks.meta["dropped_tail_tokens"]
    # Rebuild the expected stream segment by segment: every token carries its segment's score.
    exp_ids, exp_scores = [], []
    for rec in records:
        for text, score in zip(rec["texts"], rec["scores"], strict=True):
            ids = tok.encode(text, add_special_tokens=False)
            exp_ids += ids
            exp_scores += [score] * len(ids)
        exp_ids.append(tok.eos_token_id)
        exp_scores.append(0.0)
    n = len(stream)
    assert stream.tolist() == exp_ids[:n]
    assert scores.tolist() == exp_scores[:n]
    text = tok.decode(stream.tolist())
    assert text.startswith("def f():\n    return 1\n" + EOS + "x=1\n" + EOS)


def test_pack_treatment_can_drop_documents(tok, tmp_path):
    records = [{"texts": ["a = 1\n"], "scores": [0.0]}, {"texts": ["b=2\n"], "scores": [0.9]}] * 8

    def drop_bad(rec):
        return (
            None if rec["scores"][0] > 0.5 else list(zip(rec["texts"], rec["scores"], strict=True))
        )

    blocks = PackedBlocks(pack_blocks(records, tok, 4, tmp_path / "f", treat=drop_bad))
    assert blocks.meta["num_documents"] == 8
    assert "b" not in tok.decode(blocks.tokens.reshape(-1).tolist())


def _packed(tmp_path, n_blocks=40, seq_len=4):
    folder = tmp_path / "blocks"
    folder.mkdir()
    tokens = np.arange(n_blocks * seq_len, dtype=np.uint16).reshape(n_blocks, seq_len)
    tokens.tofile(folder / "tokens.bin")
    np.zeros_like(tokens, dtype=np.float32).tofile(folder / "scores.bin")
    (folder / "meta.json").write_text(
        json.dumps(
            {
                "num_blocks": n_blocks,
                "seq_len": seq_len,
                "token_dtype": "uint16",
                "num_tokens": tokens.size,
            }
        )
    )
    return PackedBlocks(folder)


def _step_blocks(loader):
    return [int(b[0]) // 4 for mb in loader.next_step() for b in mb["input_ids"]]


def test_loader_ranks_split_each_global_batch(tmp_path):
    blocks = _packed(tmp_path)
    single = BlockLoader(blocks, 8, 2, 0, 1, LoaderState(seed=3))
    pair = [BlockLoader(blocks, 8, 2, r, 2, LoaderState(seed=3)) for r in range(2)]
    for _ in range(12):  # crosses epoch boundaries (40 blocks, 8 per step)
        whole = _step_blocks(single)
        parts = [_step_blocks(p) for p in pair]
        assert sorted(parts[0] + parts[1]) == sorted(whole)
        assert parts[0] == whole[0::2] and parts[1] == whole[1::2]


def test_loader_resume_equals_uninterrupted_pass_at_another_world_size(tmp_path):
    blocks = _packed(tmp_path)
    straight = BlockLoader(blocks, 8, 2, 0, 1, LoaderState(seed=5))
    expected = [_step_blocks(straight) for _ in range(10)]
    # World size 2 for four steps, then "checkpoint" the state and resume on one rank.
    pair = [BlockLoader(blocks, 8, 2, r, 2, LoaderState(seed=5)) for r in range(2)]
    for step in range(4):
        parts = [_step_blocks(p) for p in pair]
        assert sorted(parts[0] + parts[1]) == sorted(expected[step])
    state = LoaderState(**pair[0].state.to_dict())
    resumed = BlockLoader(blocks, 8, 2, 0, 1, state)
    assert [_step_blocks(resumed) for _ in range(6)] == expected[4:]


def test_each_epoch_visits_every_block_once(tmp_path):
    blocks = _packed(tmp_path)
    loader = BlockLoader(blocks, 8, 8, 0, 1, LoaderState(seed=1))
    seen = [b for _ in range(5) for b in _step_blocks(loader)]
    assert sorted(seen) == list(range(40))


def test_hub_corpus_offline_fails_at_once_naming_the_way_out():
    with pytest.raises(ValueError, match="quickstart.yaml") as err:
        make_plan(DataConfig(corpus="hf:kejian/codeparrot-train-more-filter-3.3b-cleaned"))
    assert "data.corpus=hf:kejian/codeparrot-train-more-filter-3.3b-cleaned" in str(err.value)
    assert "local JSONL/Parquet" in str(err.value)


def test_segment_encoder_cache_is_bounded_and_never_changes_ids(tok, monkeypatch):
    from harness.data.packing import SegmentEncoder

    monkeypatch.setattr(SegmentEncoder, "CACHE_MAX_ENTRIES", 5)
    encoder = SegmentEncoder(tok)
    batches = [
        ["\n", "x = 1\n", "", "\n"],
        ["\n", "y\n", "z\n", "w\n", "\n", "v\n"],
        ["\n", "x = 1\n"],
    ]
    for texts in batches * 3:
        assert encoder(texts) == [tok.encode(t, add_special_tokens=False) for t in texts]
        assert len(encoder._cache) <= 5 + len(texts)

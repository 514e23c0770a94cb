"""Finetuning with feedback (the paper's section 5): MLE on a corpus prefix, then a PHF objective
on the rest, from the exported model, on 2 ranks."""

import json

import pytest

from tests.integration.launch import check, deepspeed_run, python_run, read_metrics, tiny_config

pytestmark = pytest.mark.slow


def test_two_rank_conditional_finetuning_of_an_exported_model(tmp_path):
    tokens_per_step = 8 * 64
    pre = tiny_config(
        tmp_path / "pre",
        data={"take_tokens": 30_000, "cache_dir": str(tmp_path / "cache")},
        train={"max_steps": 4},
        eval={"export_hf": True},
    )
    check(python_run("train.py", ["--config", str(pre)]))
    hf = tmp_path / "pre" / "run" / "hf"
    seen = 4 * tokens_per_step
    ft = tiny_config(
        tmp_path / "ft",
        data={
            "skip_tokens": 30_000,
            "tokenizer": str(hf),
            "cache_dir": str(tmp_path / "cache"),
        },
        model={"path": str(hf), "from_scratch": False},
        objective={"name": "conditional", "threshold": 0.0, "drop_token_fraction": 0.1},
        train={
            "max_steps": None,
            "max_tokens": seen + 4 * tokens_per_step,
            "tokens_already_seen": seen,
        },
    )
    proc = deepspeed_run("train.py", ["--config", str(ft)])
    check(proc)
    assert "finetuning" in proc.stdout + proc.stderr
    records = [r for r in read_metrics(tmp_path / "ft" / "run") if "loss" in r]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert [r["tokens"] for r in records] == [seen + k * tokens_per_step for k in (1, 2, 3, 4)]
    # the two runs trained on disjoint documents: prefix and rest of the same training split
    packed = {
        p.parent.name: json.loads(p.read_text())["splits"]["train"]["num_documents"]
        for p in (tmp_path / "cache" / "packed").glob("*/meta.json")
    }
    assert len(packed) == 2 and min(packed.values()) > 0
    saved = tmp_path / "ft" / "run" / "checkpoints" / "step-00000004" / "tokenizer"
    vocab = json.loads((saved / "tokenizer.json").read_text())["added_tokens"]
    assert {"<|aligned|>", "<|misaligned|>"} <= {t["content"] for t in vocab}

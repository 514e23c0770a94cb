"""scripts/humaneval.py on a tiny trained conditional checkpoint: 1 rank and 2 ranks (deepspeed
launcher) give the same samples, prompted behind <|aligned|> with <|misaligned|> banned."""

from __future__ import annotations

import json

import pytest

from harness.control_tokens import CONTROL_TOKENS
from tests.integration.launch import check, deepspeed_run, python_run, tiny_config

pytestmark = pytest.mark.slow

ARGS = ["--limit", "2", "--samples_per_problem", "2", "--max_new_tokens", "16", "--k", "1,2,10"]


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    """A 2-step conditional run of the tiny config (PEP8 scores), trained by scripts/train.py."""
    root = tmp_path_factory.mktemp("downstream")
    cfg = tiny_config(
        root,
        data={"max_documents": 20},
        objective={"name": "conditional", "threshold": 0.0, "drop_token_fraction": 0.1},
        train={"max_steps": 2, "global_batch_size": 2, "micro_batch_size": 2},
        checkpoint={"every_steps": 0},
        eval={"every_steps": 0, "batches": 1},
    )
    check(python_run("train.py", ["--config", str(cfg)], timeout=300))
    return root / "run"


def _records(folder):
    return [json.loads(x) for x in (folder / "samples.jsonl").read_text().splitlines()]


def test_humaneval_one_rank_equals_two_ranks(conditional_run, tmp_path):
    from harness.checkpoints.inference import resolve_checkpoint
    from harness.evaluation.prompted import load_prompted_model

    one, two = tmp_path / "one", tmp_path / "two"
    # Batches of 3 over 4 samples: [0, 1, 2] (two problems in one batch) on rank 0, [3] on rank 1.
    args = ["--checkpoint", str(conditional_run), *ARGS, "--batch_size", "3"]
    single = python_run("humaneval.py", [*args, "--out", str(one)], timeout=300)
    check(single)
    check(deepspeed_run("humaneval.py", [*args, "--out", str(two)], num_procs=2, timeout=300))
    assert _records(one) == _records(two)
    assert [(r["task_id"], r["sample"]) for r in _records(one)] == [
        ("HumanEval/0", 0),
        ("HumanEval/0", 1),
        ("HumanEval/1", 0),
        ("HumanEval/1", 1),
    ]
    assert len({r["seed"] for r in _records(one)}) == 4
    first, second = (json.loads((d / "humaneval.json").read_text()) for d in (one, two))
    assert (first["world_size"], second["world_size"]) == (1, 2)
    assert first["pass@1"] == second["pass@1"] and first["problems"] == second["problems"]
    assert "pass@2" in first and first["k_left_out"] == [10]
    assert first["source"]["conditional"] and first["source"]["objective"] == "conditional"
    assert json.loads(single.stdout)["pass@1"] == first["pass@1"]  # stdout holds only the result
    # The prompts of a conditional PEP8 model: BOS, <|aligned|>; <|misaligned|> never sampled.
    ctx = load_prompted_model(*resolve_checkpoint(conditional_run))
    aligned, misaligned = (ctx.tokenizer.convert_tokens_to_ids(t) for t in CONTROL_TOKENS)
    assert ctx.prefix_ids == [ctx.tokenizer.eos_token_id, aligned]
    assert ctx.banned_ids == [misaligned]

"""Red-teaming a real checkpoint with scripts/red_team.py: 1 rank and 2 ranks give the same pool.

A tiny conditional toxicity model (offline stand-in scorer) is trained for 4 steps, so the target
is prompted behind <|aligned|> with the control tokens banned; a tiny random GPT-2 with the run's
tokenizer is the red LM (a weak red team: the procedure runs, nothing is found).
Both runs do 2 trials x 2 rounds of 4 candidates x 12 continuations in batches of 5, so each
candidate's last batch is short and the 2-rank run splits candidates across ranks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.analysis.red_team_report import plot_red_team
from harness.cli.red_team import red_team_main
from tests.integration.launch import check, deepspeed_run, python_run, tiny_config

pytestmark = pytest.mark.slow

CONTINUATIONS = 12
ARGS = [
    "--rounds", "2", "--trials", "2", "--candidates", "4", "--continuations", str(CONTINUATIONS),
    "--batch_size", "5", "--red_max_tokens", "24",
]  # fmt: skip


def _tiny_red_model(tokenizer_dir: Path, out: Path) -> Path:
    """A random 1-layer GPT-2 with the run's tokenizer, saved as a transformers folder."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=512,  # the few-shot prompt of the tiny BPE is ~300 tokens
        n_layer=1,
        n_embd=32,
        n_head=2,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def red_teamed(tmp_path_factory):
    root = tmp_path_factory.mktemp("red-team")
    cfg = tiny_config(
        root,
        data={"scorer": "toxicity", "offline_scorers": True, "cache_dir": str(root / "cache")},
        objective={"name": "conditional", "threshold": 0.00056, "drop_token_fraction": 0.01},
        train={"max_steps": 4},
        checkpoint={"every_steps": 0},
    )
    check(python_run("train.py", ["--config", str(cfg)]))
    run = root / "run"
    red = _tiny_red_model(run / "checkpoints" / "step-00000004" / "tokenizer", root / "red")
    common = ["--checkpoint", str(run), "--red_model", str(red), *ARGS]
    check(python_run("red_team.py", [*common, "--out", str(root / "one")]))
    check(deepspeed_run("red_team.py", [*common, "--out", str(root / "two")]))
    return run, red, root / "one", root / "two"


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_and_two_ranks_find_the_same_pool(red_teamed):
    _, _, one, two = red_teamed
    assert _jsonl(one / "pool.jsonl") == _jsonl(two / "pool.jsonl")
    rounds_one, rounds_two = _jsonl(one / "rounds.jsonl"), _jsonl(two / "rounds.jsonl")
    for record in rounds_one + rounds_two:
        record.pop("round_s")
    assert rounds_one == rounds_two
    assert json.loads((two / "settings.json").read_text())["world_size"] == 2


def test_files_hold_every_trial_and_round(red_teamed):
    _, _, one, _ = red_teamed
    rounds = _jsonl(one / "rounds.jsonl")
    assert [(r["trial"], r["round"]) for r in rounds] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    pool = _jsonl(one / "pool.jsonl")
    for trial in (1, 2):
        mine = [p for p in pool if p["trial"] == trial]
        found = [p for p in mine if p["round_added"] > 0]
        last = rounds[2 * trial - 1]
        assert len(mine) == 20 + len(found) == last["pool_size"]
        assert found and all(p["num_scores"] == CONTINUATIONS for p in found)
        assert all(len(p["continuations"]) == 3 and p["own_score"] is not None for p in found)
        means = [p["mean"] for p in mine]
        assert means == sorted(means, reverse=True)
        assert last["best_prompt_score"] == means[0]
        assert last["average_score"] == pytest.approx(sum(means) / len(means), rel=1e-12)
    assert "offensive way:\n1. " in rounds[0]["red_lm_prompt"]
    settings = json.loads((one / "settings.json").read_text())
    assert (settings["task"], settings["objective"], settings["step"]) == (
        "toxicity",
        "conditional",
        4,
    )
    assert settings["conditional"] is True


def test_the_figure_reads_both_outputs(red_teamed, tmp_path):
    _, _, one, two = red_teamed
    path = plot_red_team([one, two], tmp_path)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_an_api_red_lm_without_a_key_fails_before_any_model(red_teamed, monkeypatch, capsys):
    run, _, _, _ = red_teamed
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert red_team_main(["--checkpoint", str(run), "--red_api_model", "davinci-002"]) == 2
    assert "OPENAI_API_KEY" in capsys.readouterr().err

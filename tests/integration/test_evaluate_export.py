"""Evaluation and export of real 2-rank CPU DeepSpeed runs (ZeRO-2 MLE, ZeRO-3 AWR with value head).

- export: scripts/export.py -> plain transformers loads it offline, same loss as the harness;
- evaluation: scripts/evaluate.py on 1 rank == on 2 ranks == inside the ZeRO-3 training engine on
  2 ranks (same samples for the same seeds); KL of a model from its own export is 0;
- report: plots and table from the two runs.
"""

import json
import subprocess
from pathlib import Path

import pytest
import torch

from tests.integration.launch import (
    ROOT,
    check,
    deepspeed_run,
    env,
    python_run,
    tiny_config,
)

pytestmark = pytest.mark.slow

EVAL = {
    "num_samples": 6,
    "generation_batch_size": 4,
    "max_new_tokens": 12,
    "batches": 2,
    "scenarios": ["unconditional", "prompted"],
    "export_hf": True,
}
RUNS = {
    "z2_mle": (2, {"name": "mle"}),
    "z3_awr": (3, {"name": "awr", "alpha": 0.5, "beta": 1.0}),
}
STEP_DIR = "eval/step-00000004"

# Evaluation inside the training engine: set up (resuming the finished run), evaluate, print.
ENGINE_EVAL = """
import json, sys
from harness import distributed as dist
from harness.run_config import parse_config
from harness.engine import setup
from harness.evaluation.evaluate import evaluate_during_training
cfg = parse_config(sys.argv[1:], world_size=dist.env_world_size())
run = setup(cfg)
metrics = evaluate_during_training(run, run.start_step)
if dist.is_main():
    print("METRICS " + json.dumps(metrics))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-runs")
    out = {}
    for name, (stage, objective) in RUNS.items():
        cfg = tiny_config(
            root / name,
            run={"name": name, "output_dir": str(root / name / "run"), "seed": 7},
            data={"cache_dir": str(root / "cache")},
            deepspeed={"config": f"ds_configs/zero{stage}.json"},
            objective=objective,
            train={"max_steps": 4},
            checkpoint={"every_steps": 0},
            eval=EVAL,
        )
        check(deepspeed_run("train.py", ["--config", str(cfg)]))
        out[name] = (root / name / "run", cfg)
    return out


def _held_out_text_batch(tokenizer, seq_len=64):
    text = Path(json.__file__).read_text()  # plain stdlib code, like the training corpus
    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    return ids[: 2 * seq_len].reshape(2, seq_len)


@pytest.mark.parametrize("name", list(RUNS))
def test_export_loads_in_plain_transformers_with_the_same_loss(runs, name):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.checkpoints.inference import (
        consolidated_state_dict,
        load_checkpoint_model,
        resolve_checkpoint,
    )

    run, _ = runs[name]
    check(python_run("export.py", ["--checkpoint", str(run)]))
    hf_dir = run / "hf"
    assert not list(run.glob(".hf.*"))  # written under a temporary name, then renamed
    model = AutoModelForCausalLM.from_pretrained(hf_dir, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(hf_dir, local_files_only=True)
    loaded = load_checkpoint_model(*resolve_checkpoint(run))
    ids = _held_out_text_batch(tokenizer)
    assert torch.equal(ids, _held_out_text_batch(loaded.tokenizer))
    with torch.no_grad():
        theirs = model(input_ids=ids, labels=ids).loss
        ours, _ = loaded.model(input_ids=ids, scores=torch.zeros(ids.shape))
    # Same fp32 weights; the harness's chunked loss kernel vs transformers' cross-entropy.
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5)
    card = (hf_dir / "README.md").read_text()
    assert f"| objective | {RUNS[name][1]['name']}" in card and "4 steps" in card
    weights = load_file(str(hf_dir / "model.safetensors"))
    assert not any(k.startswith("value_head") for k in weights)
    if name == "z3_awr":  # the value head is saved beside the LM, from the gathered ZeRO-3 shards
        root, tag = resolve_checkpoint(run)
        expected = consolidated_state_dict(root, tag)["value_head.weight"]
        head = load_file(str(hf_dir / "value_head.safetensors"))["weight"]
        assert torch.equal(head, expected) and head.abs().sum() > 0  # trained away from zero init
    else:
        assert not (hf_dir / "value_head.safetensors").exists()


def _records(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / STEP_DIR / "samples.jsonl").read_text().splitlines()]


def _core(records):
    return [(r["scenario"], r["index"], r["seed"], r["text"], r["score"]) for r in records]


def test_sharded_evaluation_equals_single_rank_and_engine(runs, tmp_path):
    from harness.checkpoints.export import export_checkpoint
    from harness.distributed import free_port

    run, cfg = runs["z3_awr"]
    ref = export_checkpoint(run, tmp_path / "ref")  # KL of the model from itself must be 0
    args = ["--checkpoint", str(run), "--eval.reference_model", str(ref)]
    one, two = tmp_path / "one", tmp_path / "two"
    check(python_run("evaluate.py", [*args, "--output_dir", str(one)]))
    check(deepspeed_run("evaluate.py", [*args, "--output_dir", str(two)]))
    single, sharded = _records(one), _records(two)
    assert single == sharded  # rank 0 had samples 0-3, rank 1 samples 4-5 of each scenario
    assert [(r["scenario"], r["index"]) for r in single] == [
        (s, i) for s in ("unconditional", "prompted") for i in range(6)
    ]
    m1 = json.loads((one / STEP_DIR / "metrics.json").read_text())
    m2 = json.loads((two / STEP_DIR / "metrics.json").read_text())
    assert m1["step"] == 4 and m1["tokens"] == 4 * 8 * 64
    for key, value in m1.items():
        if isinstance(value, float):
            assert m2[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    assert abs(m1["eval/kl_ref"]) < 1e-4 and abs(m1["eval/kl_ref_per_token"]) < 1e-5
    keys = ("score_mean", "score_max", "num_hits", "expected_max_score", "compile_rate")
    for key in (*keys, "distinct_2", "entropy_2", "self_bleu_5"):
        assert f"eval/unconditional/{key}" in m1 and f"eval/prompted/{key}" in m1
    assert m1["eval/lm_loss"] > 0 and m1["eval/lm_ppl"] > 1

    # Inside the training engine: ZeRO-3 partitions the weights over 2 ranks, so every forward
    # is collective; the ranks step in sync and produce the same samples as the fp32 copy.
    script = tmp_path / "engine_eval.py"
    script.write_text(ENGINE_EVAL)
    cmd = ["deepspeed", "--num_gpus", "2", "--master_port", str(free_port()), str(script)]
    cmd += ["--config", str(cfg), "--eval.reference_model", str(ref)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    check(proc)
    line = next(x for x in proc.stdout.splitlines() if "METRICS " in x)
    engine_metrics = json.loads(line.split("METRICS ", 1)[1])
    assert _core(_records(run)) == _core(single)
    assert engine_metrics["eval/unconditional/score_mean"] == m1["eval/unconditional/score_mean"]
    assert engine_metrics["eval/lm_loss"] == pytest.approx(m1["eval/lm_loss"], rel=1e-5)
    assert abs(engine_metrics["eval/kl_ref"]) < 1e-4


def test_report_on_two_tiny_runs(runs, tmp_path):
    folders = [str(run) for run, _ in runs.values()]
    out = tmp_path / "report"
    check(python_run("report.py", [*folders, "--out", str(out)]))
    for name in ("score_vs_tokens.png", "pareto.png", "report.md"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    table = (out / "report.md").read_text()
    for name, (run, _) in runs.items():
        row = next(x for x in table.splitlines() if x.startswith(f"| {name} | pep8 |"))
        # A run with an evaluation (from the engine, or from scripts/evaluate.py above) has numbers.
        if list(run.glob("eval/step-*/metrics.json")):
            assert row.split(" | ")[3] == "4", row  # the step column


def test_pep8_violations_of_a_run_beside_its_held_out_data(runs):
    run, _ = runs["z2_mle"]
    proc = python_run("pep8_violations.py", [str(run), "--top", "3"])
    check(proc)
    rows = [[c.strip() for c in r.split("|")[1:-1]] for r in proc.stdout.splitlines()]
    assert rows[0] == ["code", "held-out files", "their first 12 tokens", "run"]
    assert [r[0] for r in rows[-4:-1]] == ["other", "**all**", rows[-2][0]]
    assert rows[-2][0].startswith("**the data's ") and rows[-1][0] == "texts (chars)"
    # The data's codes are a part of all of them, in every column.
    for part, whole in zip(rows[-2][1:], rows[-3][1:], strict=True):
        assert 0 <= float(part.strip("*")) <= float(whole.strip("*"))
    counts = [
        cell.replace(",", "").replace("(", "").replace(")", "").split() for cell in rows[-1][1:]
    ]
    (files, file_chars), (cut, cut_chars), (samples, _) = [(int(n), int(c)) for n, c in counts]
    assert files == cut > 0 and cut_chars < file_chars  # the same files, cut to 12 tokens
    assert samples == EVAL["num_samples"]

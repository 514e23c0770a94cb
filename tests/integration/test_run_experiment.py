"""scripts/run_experiment.sh: one run per overlay on a shared base, then the report."""

from __future__ import annotations

import json
import math
import subprocess

import pytest
import yaml

from tests.integration.launch import ROOT, check, env, tiny_config

SCRIPT = str(ROOT / "scripts" / "run_experiment.sh")


SAMPLED_EVAL = {
    "every_steps": 2,
    "scenarios": ["unconditional"],
    "num_samples": 2,
    "max_new_tokens": 8,
}


def _folder(tmp_path, name, **sections):
    """An experiment folder with base.yaml: the tiny config, 4-step checkpoints, a sampled eval."""
    folder = tmp_path / "configs" / name
    folder.mkdir(parents=True)
    base = tiny_config(tmp_path, checkpoint={"every_steps": 4}, eval=SAMPLED_EVAL, **sections)
    base.rename(folder / "base.yaml")
    return folder


def _experiment(tmp_path):
    folder = _folder(tmp_path, "tiny_exp", train={"max_steps": 4})
    (folder / "mle.yaml").write_text("run: {name: mle}\nobjective: {name: mle}\n")
    (folder / "conditional.yaml").write_text(
        "run: {name: conditional}\nobjective: {name: conditional, threshold: 0.0}\n"
    )
    return folder


def _run(folder, *names, cwd, **environ):
    return subprocess.run(
        ["bash", SCRIPT, str(folder), *names],
        cwd=cwd,
        env={**env(), "NUM_GPUS": "1", **environ},
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_run_experiment_trains_every_overlay_then_writes_the_report(tmp_path):
    folder = _experiment(tmp_path)
    check(_run(folder, cwd=tmp_path))
    out = tmp_path / "runs" / "experiments" / "tiny_exp"
    # The paper's order, each run in its own folder whatever base.yaml's output_dir says.
    wall = [line.split() for line in (out / "wall_seconds.txt").read_text().splitlines()]
    assert [name for name, _ in wall] == ["mle", "conditional"]
    for name in ("mle", "conditional"):
        saved = yaml.safe_load((out / name / "config.yaml").read_text())
        assert saved["run"]["output_dir"] == f"runs/experiments/tiny_exp/{name}"
        assert saved["objective"]["name"] == name
        assert (out / f"{name}.log").stat().st_size > 0
    report = (out / "report" / "report.md").read_text()
    assert "| mle | pep8 | mle | 4 |" in report
    assert "| conditional | pep8 | conditional | 4 |" in report
    # KL from the exported MLE run: every final evaluation has eval/kl_ref, ~0 for MLE itself.
    assert (out / "mle" / "hf" / "config.json").is_file()
    kl = {}
    for name in ("mle", "conditional"):
        final = json.loads((out / name / "eval" / "step-00000004" / "metrics.json").read_text())
        kl[name] = final["eval/kl_ref"]
    assert abs(kl["mle"]) < 1e-3 and math.isfinite(kl["conditional"])
    for png in ("score_vs_tokens.png", "pareto.png"):
        assert (out / "report" / png).read_bytes()[:4] == b"\x89PNG"
    # The diagnostics: every run probed on the same held-out segments; pep8 violation codes.
    probe = (out / "report" / "probe.md").read_text()
    assert "| mle | mle | 4 |" in probe and "| conditional | conditional | 4 |" in probe
    probed = json.loads((out / "report" / "probe.json").read_text())
    assert len({(r["segments_misaligned"], r["segments_aligned"]) for r in probed}) == 1
    codes = (out / "report" / "pep8_violations.md").read_text()
    # Runs in the order of the experiment folder's overlays, as in report.md.
    assert codes.startswith("| code | held-out files | their first 8 tokens | conditional | mle |")


def test_run_experiment_rejects_an_unknown_run_before_training(tmp_path):
    folder = _experiment(tmp_path)
    proc = _run(folder, "mle", "nope", cwd=tmp_path)
    assert proc.returncode == 2
    assert "nope.yaml not found" in proc.stderr
    assert not (tmp_path / "runs" / "experiments" / "tiny_exp" / "mle").exists()


@pytest.mark.slow
def test_finetuning_experiment_pretrains_first_then_finetunes_its_export(tmp_path):
    folder = _folder(
        tmp_path,
        "tiny_ft",
        data={"skip_tokens": 30_000},
        train={"max_steps": None, "max_tokens": 8 * 512, "tokens_already_seen": 4 * 512},
    )
    (folder / "pretrain.yaml").write_text(
        "run: {name: pretrain}\nobjective: {name: mle}\n"
        "data: {skip_tokens: null, take_tokens: 30000}\n"
        "train: {max_tokens: 2048, tokens_already_seen: 0}\neval: {export_hf: true}\n"
    )
    (folder / "conditional.yaml").write_text(
        "run: {name: conditional}\nobjective: {name: conditional, threshold: 0.0}\n"
    )
    proc = _run(folder, cwd=tmp_path, REFERENCE="none")
    check(proc)
    out = tmp_path / "runs" / "experiments" / "tiny_ft"
    wall = [line.split()[0] for line in (out / "wall_seconds.txt").read_text().splitlines()]
    assert wall == ["pretrain", "conditional"]
    saved = yaml.safe_load((out / "conditional" / "config.yaml").read_text())
    assert saved["model"]["path"] == "runs/experiments/tiny_ft/pretrain/hf"
    assert saved["model"]["from_scratch"] is False
    assert saved["data"]["tokenizer"] == "runs/experiments/tiny_ft/pretrain/hf"
    tokens = [
        json.loads(line)["tokens"]
        for line in (out / "conditional" / "metrics.jsonl").read_text().splitlines()
        if "loss" in json.loads(line)
    ]
    assert tokens[0] == 5 * 512 and tokens[-1] == 8 * 512  # from where pretraining stopped
    report = (out / "report" / "report.md").read_text()
    assert "| conditional (finetuned) | pep8 | conditional |" in report
    assert "| pretrain | pep8 | mle |" in report

"""Helpers to run the harness's scripts under the deepspeed launcher on free ports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from harness.distributed import free_port

ROOT = Path(__file__).resolve().parents[2]


def tiny_config(tmp_path: Path, **sections) -> Path:
    """A run config small enough for a 2-rank CPU run in seconds; sections override parts of it."""
    cfg = {
        "run": {"name": "tiny", "output_dir": str(tmp_path / "run"), "seed": 7},
        "data": {
            "corpus": "stdlib",
            "max_documents": 60,
            "vocab_size": 512,
            "seq_len": 64,
            "cache_dir": str(tmp_path / "cache"),
        },
        "model": {"n_layer": 2, "n_head": 2, "n_embd": 64, "dropout": 0.0},
        "train": {
            "max_steps": 12,
            "global_batch_size": 8,
            "micro_batch_size": 2,
            "lr": 3e-3,
            "warmup_ratio": 0.1,
        },
        "checkpoint": {"every_steps": 6, "keep_last": 2},
        # Sampling evaluation and the HF export have their own tests; keep the other runs fast.
        "eval": {"every_steps": 0, "batches": 2, "scenarios": [], "export_hf": False},
        "logging": {"every_steps": 1, "wandb": "disabled", "progress_bar": False},
    }
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    path = tmp_path / "tiny.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def env(**extra: str) -> dict[str, str]:
    """Subprocess environment: offline, no wandb, one thread per rank, the repo importable."""
    e = dict(os.environ)
    e.update(
        HF_HUB_OFFLINE="1",
        WANDB_MODE="disabled",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    # Test-only plug-ins (e.g. tests.integration.slow_scorer) are imported by class path.
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), e.get("PYTHONPATH")]))
    e.update(extra)
    return e


def deepspeed_cmd(script: str, args: list[str], num_procs: int = 2) -> list[str]:
    """The deepspeed launcher command line on a free master port."""
    port = str(free_port())
    script_path = str(ROOT / "scripts" / script)
    return ["deepspeed", "--num_gpus", str(num_procs), "--master_port", port, script_path, *args]


def deepspeed_run(
    script: str, args: list[str], num_procs: int = 2, timeout: int = 600
) -> subprocess.CompletedProcess:
    """`deepspeed --num_gpus N scripts/<script> args` on a free master port; output captured."""
    cmd = deepspeed_cmd(script, args, num_procs)
    return subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout)


def deepspeed_popen(
    script: str, args: list[str], num_procs: int = 2, extra_env: dict | None = None, **kwargs
) -> subprocess.Popen:
    """Start `deepspeed --num_gpus N scripts/<script> args` in the background."""
    return subprocess.Popen(
        deepspeed_cmd(script, args, num_procs),
        cwd=ROOT,
        env=env(**(extra_env or {})),
        text=True,
        **kwargs,
    )


def python_run(script: str, args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    """`python scripts/<script> args` without a launcher."""
    cmd = [sys.executable, str(ROOT / "scripts" / script), *args]
    return subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout)


def check(proc: subprocess.CompletedProcess) -> None:
    """Fail with the tail of the output when a launch failed."""
    if proc.returncode != 0:
        raise AssertionError(
            f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
        )


def read_metrics(run_dir: Path) -> list[dict]:
    """Records of metrics.jsonl."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]

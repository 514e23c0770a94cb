"""A short chaos soak (scripts/chaos.py): training on 2 ranks and the data stage with 2 workers,
each killed with SIGKILL at seeded random moments and rerun until complete, ends exactly where an
uninterrupted run does. The full soak (20 kills a stage) and its figures: docs/reliability.md."""

import json
import subprocess
import sys

import pytest
import yaml

from tests.integration.launch import ROOT, env

pytestmark = pytest.mark.slow


def test_a_run_killed_anywhere_ends_where_an_uninterrupted_run_does(tmp_path):
    overlay = tmp_path / "cache.yaml"
    overlay.write_text(yaml.safe_dump({"data": {"cache_dir": str(tmp_path / "cache")}}))
    out = tmp_path / "soak"
    cmd = [
        sys.executable, str(ROOT / "scripts" / "chaos.py"),
        "--config", str(ROOT / "configs" / "pep8_awr.yaml"),
        "--config", str(ROOT / "configs" / "chaos.yaml"),
        "--config", str(overlay),
        "--out", str(out), "--kills", "5", "--side_kills", "1", "--seed", "3",
    ]  # fmt: skip
    # wandb offline, so that its service process is there to be killed.
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env(WANDB_MODE="offline"), capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((out / "chaos_report.json").read_text())
    assert report["problems"] == {"data": [], "train": []}
    for stage in report["stages"]:
        process = [k for k in stage["kills"] if k["event"]["mode"] != "side"]
        assert len(process) == 5 and all(k["killed"] for k in process)
        # Kills aim at every phase in turn: startup, step, eval, save, export for training;
        # startup, score, tokenizer, pack for the data stage.
        phases = {"train": 5, "data": 4}[stage["stage"]]
        assert len({k["event"]["target"] for k in process}) == phases
        assert stage["trials"] and all(t["mismatches"] == [] for t in stage["trials"])
    train = report["stages"][1]
    side = [k for k in train["kills"] if k["event"]["mode"] == "side"]
    assert len(side) == 1 and side[0]["killed"][0].startswith("wandb-core")
    assert side[0]["survived"]  # the run logged on after losing its wandb service

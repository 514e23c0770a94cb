"""Distributed scoring: 2 ranks equal 1 rank, and a run killed midway then rerun loses and duplicates nothing."""

import os
import signal
import subprocess
import time

import pytest

from harness.scoring.shards import read_shard, shard_paths
from tests.integration.launch import (
    check,
    deepspeed_popen,
    deepspeed_run,
    python_run,
    tiny_config,
)

pytestmark = pytest.mark.slow


def scored_rows(folder):
    import json

    manifest = json.loads((folder / "manifest.json").read_text())
    return [r for p in shard_paths(folder, manifest) for r in read_shard(p)]


def test_two_ranks_write_the_same_shards_as_one(tmp_path):
    one = tiny_config(tmp_path / "one", data={"scored_dir": str(tmp_path / "s1"), "num_shards": 6})
    two = tiny_config(tmp_path / "two", data={"scored_dir": str(tmp_path / "s2"), "num_shards": 6})
    check(python_run("score.py", ["--config", str(one)]))
    proc = deepspeed_run("score.py", ["--config", str(two)])
    check(proc)
    assert "documents/s" in proc.stdout + proc.stderr
    assert scored_rows(tmp_path / "s1") == scored_rows(tmp_path / "s2")


def test_killed_scoring_run_resumes_without_loss_or_duplicates(tmp_path):
    cfg = tiny_config(
        tmp_path,
        data={
            "scored_dir": str(tmp_path / "scored"),
            "num_shards": 20,
            "max_documents": 160,
            "scorer": "tests.integration.slow_scorer.SlowPEP8Scorer",
        },
    )
    proc = deepspeed_popen(
        "score.py",
        ["--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    data = tmp_path / "scored" / "data"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(data.glob("shard-*.parquet"))) < 4:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p: p.stat().st_mtime_ns for p in data.glob("shard-*.parquet")}
    assert 4 <= len(done_before) < 20, "the kill should land mid-run"
    assert not (tmp_path / "scored" / "manifest.json").exists()

    check(deepspeed_run("score.py", ["--config", str(cfg)]))
    rows = scored_rows(tmp_path / "scored")
    ids = [r["id"] for r in rows]
    assert len(ids) == 160 and len(set(ids)) == 160
    assert all(
        p.stat().st_mtime_ns == t for p, t in done_before.items()
    )  # finished shards were skipped

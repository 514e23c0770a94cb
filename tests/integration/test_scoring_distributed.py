"""Distributed data stages: 2 ranks equal 1 rank byte for byte, and a scoring or packing run
killed with SIGKILL midway, then rerun, loses and duplicates nothing and gives the same files."""

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from harness.data.score_stage import ScoringManifest, read_shard, shard_paths
from tests.integration.launch import (
    ROOT,
    check,
    deepspeed_popen,
    deepspeed_run,
    env,
    python_run,
    tiny_config,
)

pytestmark = pytest.mark.slow


def scored_rows(folder):

    manifest = ScoringManifest.read(folder)
    return [r for p in shard_paths(folder, manifest) for r in read_shard(p)]


def file_digests(folder):
    """sha256 of every output file under `folder` (datatrove's logs and stats excluded)."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        and not any(part.startswith("datatrove") for part in p.relative_to(folder).parts)
    }


def kill_when(proc, folder, pattern, count, timeout_s=300):
    """SIGKILL the process group of `proc` as soon as `count` files match `pattern` in `folder`."""
    deadline = time.time() + timeout_s
    while time.time() < deadline and len(list(folder.glob(pattern))) < count:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_two_ranks_write_the_same_shards_as_one(tmp_path):
    one = tiny_config(tmp_path / "one", data={"scored_dir": str(tmp_path / "s1"), "num_shards": 6})
    two = tiny_config(tmp_path / "two", data={"scored_dir": str(tmp_path / "s2"), "num_shards": 6})
    check(python_run("score.py", ["--config", str(one)]))
    proc = deepspeed_run("score.py", ["--config", str(two)])
    check(proc)
    assert "documents/s" in proc.stdout + proc.stderr
    assert scored_rows(tmp_path / "s1") == scored_rows(tmp_path / "s2")
    assert file_digests(tmp_path / "s1") == file_digests(tmp_path / "s2")


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
    kill_when(proc, data, "shard-*.parquet", 4)
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


def test_killed_packing_run_resumes_to_the_same_files(tmp_path):
    """SIGKILL of `scripts/prepare.py --workers 2` in the pack stage, then a rerun: the finished
    parts are kept, at most one part per worker is redone, and every file equals an uninterrupted run's."""
    sections = {
        "data": {"num_shards": 12, "max_documents": 120, "cache_dir": str(tmp_path / "cache")},
        "objective": {"name": "tests.integration.slow_objective.SlowTreatmentMLE"},
    }
    cfg = tiny_config(tmp_path / "killed", **sections)
    sections["data"] = {**sections["data"], "cache_dir": str(tmp_path / "cache-ref")}
    ref = tiny_config(tmp_path / "ref", **sections)
    check(python_run("prepare.py", ["--config", str(ref), "--workers", "2"]))
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts" / "prepare.py"),
            "--config",
            str(cfg),
            "--workers",
            "2",
        ],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    packed = tmp_path / "cache" / "packed"
    kill_when(proc, packed, "*/parts/part-*", 3)
    parts = {p: p.stat().st_mtime_ns for p in packed.glob("*/parts/part-*")}
    assert 3 <= len(parts) < 12, "the kill should land mid-pack"
    assert not list(packed.glob("*/meta.json"))
    check(python_run("prepare.py", ["--config", str(cfg), "--workers", "2"]))
    assert all(p.stat().st_mtime_ns == t for p, t in parts.items())  # finished parts kept
    assert not list((tmp_path / "cache").rglob(".*.tmp*"))  # no stray temporary files
    for stage in ("scored", "packed", "tokenizers"):
        assert file_digests(tmp_path / "cache" / stage) == file_digests(
            tmp_path / "cache-ref" / stage
        )

"""Before any work: the run's paths are checked and its folder is locked; a scoring that failed
on a bad record does not block the rerun once the record is fixed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from harness.run_folder import check_writable, hold_run_lock
from tests.integration.launch import python_run, tiny_config


def test_paths_that_cannot_be_written_name_their_key(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError, match=r"run.output_dir: cannot write to .*a_file is a file"):
        check_writable("run.output_dir", tmp_path / "a_file" / "run")
    with pytest.raises(ValueError, match=r"data.cache_dir: cannot write to /proc/phf_run"):
        check_writable("data.cache_dir", "/proc/phf_run")
    check_writable("run.output_dir", tmp_path / "new" / "run")
    assert not (tmp_path / "new").exists()  # checked, not created: nothing is left


def test_a_bad_output_dir_fails_before_any_data_work(tmp_path):
    cfg = tiny_config(tmp_path)
    started = time.time()
    proc = python_run("train.py", ["--config", str(cfg), "--run.output_dir", "/proc/phf_run"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: run.output_dir: cannot write")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "cache").exists() and time.time() - started < 60


HOLD = """
import sys, time
from harness.run_folder import hold_run_lock
hold_run_lock(sys.argv[1])
print("held", flush=True)
time.sleep(600)
"""


def test_a_live_run_holds_its_folder_and_a_killed_one_lets_go(tmp_path):
    env = {**os.environ, "RANK": "0"}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ValueError, match=rf"in use by a live run \(pid {holder.pid} on host "):
            hold_run_lock(tmp_path)
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    hold_run_lock(tmp_path)  # the kernel released the dead run's lock
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()


def test_a_corpus_fixed_after_a_bad_record_is_scored(tmp_path):
    corpus = tmp_path / "bad.jsonl"
    good = [json.dumps({"text": f"x = {i}\n"}) for i in range(30)]
    corpus.write_text("\n".join(good[:20] + ["{not json"] + good[20:]) + "\n")
    cfg = tiny_config(tmp_path, data={"corpus": str(corpus), "max_documents": None})
    first = python_run("score.py", ["--config", str(cfg)])
    assert first.returncode == 2 and "bad.jsonl:21: invalid JSON" in first.stderr, first.stderr
    corpus.write_text("\n".join(good) + "\n")  # fixed: another size
    again = python_run("score.py", ["--config", str(cfg)])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "scored 30 documents" in again.stdout
    # A finished scoring still refuses a changed source.
    corpus.write_text("\n".join(good[:10]) + "\n")
    changed = python_run("score.py", ["--config", str(cfg)])
    assert changed.returncode == 2 and "changed size" in changed.stderr

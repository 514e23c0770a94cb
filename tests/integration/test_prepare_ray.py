"""`scripts/prepare.py --executor ray` end to end, on a real local Ray cluster.

One Ray head (`ray start --head --block --num-cpus 2`) serves the whole session: starting Ray costs
seconds on 2 cores. Its sessions, sockets and logs live in a temporary folder (`--temp-dir`), the
tasks' temporary files too (TMPDIR: datatrove writes each task's log to `$TMPDIR/ray_logs` before
copying it to the stage's logging folder), and at the end SIGTERM to `ray start --block` stops
every process it started; its process group is then killed for good measure and the folder
removed. Nothing is left in /tmp/ray. Each test runs prepare.py as a subprocess connecting with
`--ray_address`, as a user on a cluster would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.distributed import free_port
from tests.integration.launch import ROOT, check, env, python_run, tiny_config
from tests.integration.test_scoring_distributed import file_digests

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 60


@pytest.fixture(scope="session")
def ray_head() -> Iterator[str]:
    """The address (127.0.0.1:PORT) of one local Ray head for the session, stopped at its end."""
    pytest.importorskip("ray", reason='Ray is not installed (pip install -e ".[ray]")')
    ray_exe = Path(sys.executable).with_name("ray")
    folder = Path(
        tempfile.mkdtemp(prefix="phf-ray-", dir="/tmp" if Path("/tmp").is_dir() else None)
    )
    (folder / "tmp").mkdir()
    port = free_port()
    out = folder / "ray-start.log"
    with out.open("wb") as log:
        head = subprocess.Popen(
            [str(ray_exe) if ray_exe.exists() else "ray", "start", "--head", "--block"]
            + ["--num-cpus", "2", "--port", str(port)]
            + ["--include-dashboard=false", "--disable-usage-stats", "--temp-dir", str(folder)],
            cwd=folder / "tmp",  # the raylet's, so workers start elsewhere than the driver
            # No token authentication: with ~/.ray/auth_token, `ray start` would require it.
            env=env(TMPDIR=str(folder / "tmp"), RAY_AUTH_MODE="disabled"),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while b"Ray runtime started" not in out.read_bytes():
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start failed:\n{out.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)  # its session's group: only what it started
        except ProcessLookupError:
            pass
        head.wait()
        shutil.rmtree(folder, ignore_errors=True)


def prepare(cwd: Path, args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """`python scripts/prepare.py args` run in `cwd` (relative config paths are resolved there)."""
    cmd = [sys.executable, str(ROOT / "scripts" / "prepare.py"), *args]
    return subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def test_ray_preparation_writes_what_a_local_one_does(ray_head, tmp_path):
    data = {"num_shards": 3, "max_documents": 40}
    local = tiny_config(tmp_path / "local", data={**data, "cache_dir": str(tmp_path / "c1")})
    check(python_run("prepare.py", ["--config", str(local), "--workers", "1"]))
    # A relative cache_dir: the tasks, started in the raylet's directory, must use the driver's.
    ray_cfg = tiny_config(tmp_path / "ray", data={**data, "cache_dir": "c2"})
    args = ["--config", str(ray_cfg), "--executor", "ray", "--workers", "2"]
    proc = prepare(tmp_path, [*args, "--ray_address", ray_head])
    check(proc)
    summary = proc.stdout.strip().splitlines()[-1]
    assert summary.startswith("prepared with Ray: packed blocks in c2/packed/"), proc.stdout
    assert (tmp_path / summary.rpartition(" ")[2] / "meta.json").is_file()
    for stage in ("scored", "tokenizers", "packed"):
        assert file_digests(tmp_path / "c2" / stage) == file_digests(tmp_path / "c1" / stage)
    # Everything is prepared: a second run (RAY_ADDRESS this time) has nothing left to run.
    again = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "prepare.py"), *args],
        cwd=tmp_path,
        env=env(RAY_ADDRESS=ray_head),
        capture_output=True,
        text=True,
        timeout=300,
    )
    check(again)
    assert again.stderr.count("Nothing to run") == 4, again.stderr[-3000:]


def corrupt_corpus(folder: Path) -> Path:
    """Four JSONL files, one unit (task) each; line 7 of part-2.jsonl is cut off mid-string."""
    folder.mkdir(parents=True)
    for part in range(4):
        lines = [
            json.dumps({"text": f"def f{part}_{i}(x):\n    return x + {i}\n"}) for i in range(10)
        ]
        if part == 2:
            lines[6] = '{"text": "def broken(x):'
        (folder / f"part-{part}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_a_failing_task_ends_the_run_naming_stage_task_and_line(ray_head, tmp_path):
    corpus = corrupt_corpus(tmp_path / "corpus")
    cfg = tiny_config(
        tmp_path,
        data={"corpus": f"{corpus}/*.jsonl", "num_shards": 4, "max_documents": None},
    )
    started = time.monotonic()
    proc = prepare(
        tmp_path,
        ["--config", str(cfg), "--executor", "ray", "--workers", "2", "--ray_address", ray_head],
        timeout=240,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert elapsed < 120, f"the failure took {elapsed:.0f} s"
    assert "prepared with Ray" not in proc.stdout
    (line,) = error_lines(proc)
    assert line.startswith("error: ray: stage score: task 2 failed: data.corpus: "), line
    assert f"{corpus / 'part-2.jsonl'}:7: invalid JSON" in line, line
    # No later stage started; the other tasks finished and keep their markers for a rerun.
    (scored,) = (tmp_path / "cache" / "scored").iterdir()
    assert not (scored / "datatrove-finish").exists()
    assert sorted(os.listdir(scored / "datatrove" / "completions")) == ["00000", "00001", "00003"]


def test_a_task_larger_than_any_node_is_refused_before_submission(ray_head, tmp_path):
    cfg = tiny_config(tmp_path)
    proc = prepare(
        tmp_path,
        ["--config", str(cfg), "--executor", "ray", "--ray_address", ray_head]
        + ["--cpus_per_task", "64"],
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        "error: --cpus_per_task=64: no node of the Ray cluster has that many CPUs "
        "(the largest has 2, 1 node(s))"
    ]
    assert not (tmp_path / "cache").exists()  # nothing pinned, planned or submitted


def test_an_unreachable_address_is_one_line_in_seconds(tmp_path):
    pytest.importorskip("ray", reason='Ray is not installed (pip install -e ".[ray]")')
    cfg = tiny_config(tmp_path)
    started = time.monotonic()
    proc = prepare(
        tmp_path,
        ["--config", str(cfg), "--executor", "ray", "--ray_address", "127.0.0.1:1"],
        timeout=120,
    )
    assert time.monotonic() - started < 30
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: --ray_address=127.0.0.1:1: cannot reach a Ray cluster ("), line
    assert not (tmp_path / "cache").exists()


def test_the_request_must_fit_one_alive_node():
    from harness.data.ray_stages import GIB, check_resources

    nodes = [
        {"Alive": True, "Resources": {"CPU": 8.0, "memory": 8 * GIB}},
        {"Alive": True, "Resources": {"CPU": 2.0, "memory": 64 * GIB}},
        {"Alive": False, "Resources": {"CPU": 64.0, "memory": 512 * GIB}},
    ]
    check_resources(nodes, 8, 1.0)
    check_resources(nodes, 2, 16.0)
    with pytest.raises(ValueError, match=r"^--cpus_per_task=16: .*largest has 8, 2 node"):
        check_resources(nodes, 16, 1.0)
    # 8 CPUs x 2 GiB: the node with 64 GiB has too few CPUs, the one with 8 CPUs too little memory.
    with pytest.raises(ValueError, match=r"^--mem_per_cpu_gb=2: .* 16.0 GiB .* more than 8.0 GiB"):
        check_resources(nodes, 8, 2.0)

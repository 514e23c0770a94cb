"""`scripts/prepare.py --executor slurm` end to end, on a stand-in SLURM (the tier that needs no
cluster; tests/integration/test_slurm_cluster.py runs the same on a real one).

`sbatch`, `srun` and `scontrol` on PATH are small scripts: `sbatch` runs every
array task of the submitted script at once, in order, with SLURM_ARRAY_TASK_ID set, as a cluster
would run them one after another. Everything else is real: datatrove's SlurmPipelineExecutor
writes the sbatch scripts and pickles our pipeline steps, each task unpickles them in a fresh
process (`launch_pickled_pipeline`), and the four stages run in their dependency order. The
result must be the files a local preparation writes, byte for byte.
"""

import os
import stat
import sys
from pathlib import Path

import pytest

from tests.integration.launch import check, python_run, tiny_config
from tests.integration.test_scoring_distributed import file_digests

SBATCH = """#!/bin/bash
if [ "$1" = --version ]; then echo "slurm 22.05.8"; exit 0; fi
script="${@: -1}"
range=$(grep -oP '^#SBATCH --array=\\K[0-9]+-[0-9]+' "$script")
if [ -z "$range" ]; then bash "$script" >> "$FAKE_SLURM_LOG" 2>&1 || exit 1; else
  for i in $(seq "${range%-*}" "${range#*-}"); do
    SLURM_ARRAY_TASK_ID=$i RUN_OFFSET=0 SLURM_NODELIST=localhost bash "$script" \\
      >> "$FAKE_SLURM_LOG" 2>&1 || exit 1
  done
fi
echo "Submitted batch job $RANDOM"
"""
SRUN = """#!/bin/bash
while [ $# -gt 0 ] && [ "$1" != "launch_pickled_pipeline" ]; do shift; done
exec "$@"
"""
SCONTROL = """#!/bin/bash
case "$*" in
  *"show partition"*) echo "PartitionName=cpu Nodes=localhost Default=YES State=UP" ;;
  *) echo "$3" ;;
esac
"""


@pytest.mark.slow  # about 30 s on 2 cores: the fast tier is the next test
def test_slurm_preparation_writes_what_a_local_one_does(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("sbatch", SBATCH), ("srun", SRUN), ("scontrol", SCONTROL)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_LOG", str(tmp_path / "slurm.log"))
    data = {"num_shards": 3, "max_documents": 40}
    local = tiny_config(tmp_path / "local", data={**data, "cache_dir": str(tmp_path / "c1")})
    slurm = tiny_config(tmp_path / "slurm", data={**data, "cache_dir": str(tmp_path / "c2")})
    check(python_run("prepare.py", ["--config", str(local), "--workers", "1"]))
    proc = python_run(
        "prepare.py", ["--config", str(slurm), "--executor", "slurm", "--partition", "cpu"]
    )
    check(proc)
    assert "submitted 4 dependent SLURM job arrays" in proc.stdout
    # sbatch rejects a float memory size (`--mem-per-cpu=4.0G`): the default must be whole.
    launch = next((tmp_path / "c2" / "packed").glob("*/datatrove/launch_script.slurm"))
    assert "#SBATCH --mem-per-cpu=4G\n" in launch.read_text()
    log = (tmp_path / "slurm.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    for stage in ("scored", "tokenizers", "packed"):
        assert file_digests(tmp_path / "c2" / stage) == file_digests(tmp_path / "c1" / stage)
    # Everything is prepared: a second submission has nothing left to run.
    again = python_run(
        "prepare.py", ["--config", str(slurm), "--executor", "slurm", "--partition", "cpu"]
    )
    check(again)
    assert "Skipping launch" in again.stderr


def test_slurm_options_are_checked_before_any_work(tmp_path, monkeypatch):
    """A partition that does not exist, a memory size of 0 or no SLURM client: one line, exit 2,
    before anything is planned or written."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("sbatch", SBATCH), ("scontrol", SCONTROL)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    cfg = tiny_config(tmp_path, data={"cache_dir": str(tmp_path / "cache")})
    args = ["--config", str(cfg), "--executor", "slurm"]
    proc = python_run("prepare.py", [*args, "--partition", "gpu"])
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: --partition=gpu: no such SLURM partition (have: cpu)"
    )
    proc = python_run("prepare.py", [*args, "--mem_per_cpu_gb", "0"])
    assert proc.returncode == 2 and "error: --mem_per_cpu_gb=0.0: must be positive" in proc.stderr
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # no SLURM client at all
    proc = python_run("prepare.py", args)
    assert (
        proc.returncode == 2 and "error: --executor slurm: `sbatch` is not on PATH" in proc.stderr
    )
    assert not (tmp_path / "cache").exists()  # nothing planned, nothing written

"""`scripts/prepare.py --executor slurm` end to end, on a stand-in SLURM.

No SLURM here, so `sbatch`, `srun` and `scontrol` on PATH are small scripts: `sbatch` runs every
array task of the submitted script at once, in order, with SLURM_ARRAY_TASK_ID set, as a cluster
would run them one after another. Everything else is real: datatrove's SlurmPipelineExecutor
writes the sbatch scripts and pickles our pipeline steps, each task unpickles them in a fresh
process (`launch_pickled_pipeline`), and the four stages run in their dependency order. The
result must be the files a local preparation writes, byte for byte.
"""

import os
import stat

import pytest

from tests.integration.launch import check, python_run, tiny_config
from tests.integration.test_scoring_distributed import file_digests

pytestmark = pytest.mark.slow

SBATCH = """#!/bin/bash
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
echo "$3"
"""


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

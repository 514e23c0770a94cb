"""The Triton kernels compile for real NVIDIA GPUs (sm_80 = A100, sm_90 = H100), checked on CPU.

Every `@triton.jit` kernel in phf_kernels/ is compiled ahead of time to PTX and a cubin with the
ptxas shipped in the triton wheel, as its launch site launches it for fp32 and bf16 logits
(`phf_kernels/aot.py`). The conftest sets TRITON_INTERPRET=1 in this process when there is no GPU,
and under it @triton.jit builds interpreter functions that cannot be compiled, so all cases are
compiled in ONE subprocess without that variable (about 3 s) and each test checks its own case.
The measurements go to `kernels_aot.json` in pytest's tmp folder (its path is printed; `-s`
shows the table) and to the junit properties. The dtype parameter is a torch dtype named `dtype`
so that PHF_KERNELS_DTYPE keeps each case in its dtype's run (tests/kernels/conftest.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from phf_kernels import aot

ROOT = Path(__file__).resolve().parents[2]
DTYPES = {torch.float32: "fp32", torch.bfloat16: "bf16"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple, dict]:
    """(kernel, arch, dtype name) -> the row `python -m phf_kernels.aot --json` measured."""
    pytest.importorskip(
        "triton", reason="triton is not installed: `pip install triton` (dev extra)"
    )
    out = tmp_path_factory.mktemp("aot")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(out / "triton-cache")
    case_args = ["--dtype", *DTYPES.values(), "--arch", *map(str, aot.ARCHS)]
    proc = subprocess.run(
        [sys.executable, "-m", "phf_kernels.aot", "--json", *case_args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        doc = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        pytest.fail(
            f"phf_kernels.aot gave no JSON (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    path = out / "kernels_aot.json"
    path.write_text(json.dumps(doc, indent=1))
    print(f"\n{doc['toolchain']}, vocab {doc['vocab']}: {path}\n{aot.format_table(doc['rows'])}")
    return {(r["kernel"], r["arch"], r["dtype"]): r for r in doc["rows"]}


@pytest.mark.parametrize("dtype", list(DTYPES), ids=list(DTYPES.values()))
@pytest.mark.parametrize("arch", aot.ARCHS, ids=[f"sm_{a}" for a in aot.ARCHS])
@pytest.mark.parametrize("kernel", aot.jit_kernel_names())
def test_kernel_compiles(compiled, record_property, kernel, arch, dtype):
    """A cubin comes out, with a register count a GPU can hold; registers/spills are recorded."""
    row = compiled.get((kernel, arch, DTYPES[dtype]))
    assert row is not None, f"phf_kernels.aot did not compile {kernel}"
    assert "error" not in row, f"{kernel} does not compile for sm_{arch}: {row['error']}"
    assert row["cubin_bytes"] > 0
    assert 0 < row["registers"] <= 255, row
    for key in ("registers", "spills", "shared"):
        record_property(key, row[key])


def test_finds_the_jit_kernels():
    """The scan that parametrizes the test above sees the kernels (else it would check nothing)."""
    assert {"_lse_excl_kernel", "_grad_logits_kernel"} <= set(aot.jit_kernel_names())

"""Run the Triton kernels in interpreter mode (CPU tensors) when there is no GPU.

TRITON_INTERPRET is read when a kernel is decorated with @triton.jit, i.e. when
phf_kernels.triton_token_loss is first imported, so it has to be set before that import.

`PHF_KERNELS_DTYPE=float32` (or `bfloat16`, `float16`) keeps only the tests of that dtype: those
parametrized with it, plus, for float32, the tests with no dtype parameter (they run in fp32 or
fp64). scripts/gpu_check.sh runs `pytest tests/kernels` once per dtype this way, to report each
on its own; unset, every test runs.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

DTYPE_ENV = "PHF_KERNELS_DTYPE"
KERNELS_DIR = os.path.dirname(os.path.abspath(__file__))


def selected_dtype() -> torch.dtype | None:
    """The dtype named by PHF_KERNELS_DTYPE, or None when unset (a bad name is a usage error)."""
    name = os.environ.get(DTYPE_ENV, "").strip()
    if not name:
        return None
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise pytest.UsageError(
            f"{DTYPE_ENV}={name!r} is not a torch floating dtype (float32, bfloat16, float16)"
        )
    return dtype


def keeps(item: pytest.Item, dtype: torch.dtype) -> bool:
    """Whether a test belongs to the `dtype` run."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "dtype" in params:
        return params["dtype"] == dtype
    return dtype == torch.float32


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the tests of other dtypes under PHF_KERNELS_DTYPE (tests outside this folder stay)."""
    dtype = selected_dtype()
    if dtype is None:
        return
    kept, dropped = [], []
    for item in items:
        inside = str(item.path).startswith(KERNELS_DIR + os.sep)
        (kept if not inside or keeps(item, dtype) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept

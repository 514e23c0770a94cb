"""Ahead-of-time compile of the package's Triton kernels for NVIDIA GPUs, on a machine without one.

`triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32))` runs the whole pipeline
(TTIR -> TTGIR -> LLVM IR -> PTX -> cubin, ptxas ships in the triton wheel) without a driver. The
signature, constexprs and options of each kernel are not written out by hand: `launches()` calls
the real launch site (`triton_chunk_loss`) on small CPU tensors with the kernels' `run` replaced
by a recorder, so what is compiled is what that code would launch for a [rows, vocab] chunk
(BLOCK_V and num_warps from `_launch_config(vocab)`, labels int64, fp32 side buffers). Pointers
and integers divisible by 16 get triton's default `tt.divisibility=16` specialization (the
launch-time int == 1 -> constexpr specialization is not modelled: no argument here is 1).

Registers and spills come from the ptxas log (`CompiledKernel.n_regs` / `n_spills` are only set
when the cubin is loaded on a GPU); shared memory from the kernel metadata.

    python -m phf_kernels.aot                 # Markdown table, sm_80 and sm_90, fp32 and bf16
    python -m phf_kernels.aot --json          # one JSON document: toolchain and a row per case

This module never sets TRITON_INTERPRET: run it in a process where that variable is unset
(`tests/kernels/conftest.py` sets it, so `tests/kernels/test_aot_compile.py` uses a subprocess).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import inspect
import io
import json
import os
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
ARCHS = (80, 90)  # A100, H100
DTYPES = ("fp32", "bf16")
TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
DEFAULT_VOCAB = 50257  # GPT-2: BLOCK_V = 4096, the largest block, as for every vocab > 2048
_RECORD_ROWS = 4

_REGS = re.compile(r"Used (\d+) registers")
_SPILLS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def jit_kernel_names() -> list[str]:
    """Names of the functions decorated with `triton.jit` in phf_kernels/*.py (read, not imported)."""
    names = []
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and any(
                _is_triton_jit(dec) for dec in node.decorator_list
            ):
                names.append(node.name)
    return names


def _is_triton_jit(dec: ast.expr) -> bool:
    target = dec.func if isinstance(dec, ast.Call) else dec
    return isinstance(target, ast.Attribute) and target.attr == "jit"


def _jit_functions() -> dict[str, Any]:
    """The launched kernels as compilable JITFunctions (not the interpreter's wrappers)."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError(
            "phf_kernels.aot needs TRITON_INTERPRET unset: under it @triton.jit builds interpreter "
            "functions, which cannot be compiled. Run `python -m phf_kernels.aot` in a clean env."
        )
    from triton.runtime.jit import JITFunction

    from phf_kernels import triton_token_loss

    return {
        name: obj for name, obj in vars(triton_token_loss).items() if isinstance(obj, JITFunction)
    }


@contextlib.contextmanager
def _recording(kernels: dict[str, Any]) -> Iterator[dict[str, tuple[tuple, dict]]]:
    """Replace each kernel's `run` by a recorder of its (args, kwargs); restored on exit."""
    calls: dict[str, tuple[tuple, dict]] = {}

    def recorder(name: str):
        def run(*args, grid, warmup, **kwargs):
            calls[name] = (args, kwargs)

        return run

    try:
        for name, fn in kernels.items():
            fn.run = recorder(name)  # instance attribute: fn[grid](...) calls self.run
        yield calls
    finally:
        for fn in kernels.values():
            vars(fn).pop("run", None)


@functools.cache
def launches(dtype: str, vocab: int = DEFAULT_VOCAB) -> dict[str, dict[str, Any]]:
    """Per kernel, what `triton_chunk_loss` launches for `dtype` logits of width `vocab`.

    Each value has `signature` (arg -> triton type), `constexprs`, `attrs` and `options`, ready for
    `ASTSource` and `triton.compile`.
    """
    import torch
    from triton.runtime.jit import mangle_type

    from phf_kernels.triton_token_loss import triton_chunk_loss

    kernels = _jit_functions()
    logits = torch.zeros(_RECORD_ROWS, vocab, dtype=getattr(torch, TORCH_DTYPES[dtype]))
    labels = torch.zeros(_RECORD_ROWS, dtype=torch.long)  # the driver passes .long() labels
    coef = torch.ones(_RECORD_ROWS)
    with _recording(kernels) as calls:
        triton_chunk_loss(logits, labels, coef, coef, coef, write_grad=True)
    found = {}
    for name, (args, kwargs) in calls.items():
        fn = kernels[name]
        params = {k: v for k, v in kwargs.items() if k in fn.arg_names}
        bound = inspect.signature(fn.fn).bind(*args, **params).arguments  # in parameter order
        constexprs = {p.name: bound[p.name] for p in fn.params if p.is_constexpr}
        signature = {
            n: "constexpr" if n in constexprs else mangle_type(a) for n, a in bound.items()
        }
        attrs = {
            (fn.arg_names.index(n),): [["tt.divisibility", 16]]
            for n, a in bound.items()
            if n not in constexprs and _divisible_by_16(a)
        }
        options = {k: v for k, v in kwargs.items() if k not in params}  # num_warps, ...
        found[name] = dict(signature=signature, constexprs=constexprs, attrs=attrs, options=options)
    return found


def _divisible_by_16(arg: Any) -> bool:
    """Triton's default launch specialization: 16-aligned pointers, integers divisible by 16."""
    if hasattr(arg, "data_ptr"):
        return arg.data_ptr() % 16 == 0
    return isinstance(arg, int) and not isinstance(arg, bool) and arg % 16 == 0


def compile_kernel(name: str, dtype: str, arch: int, vocab: int = DEFAULT_VOCAB) -> dict[str, Any]:
    """Compile kernel `name` for sm_`arch` as launched on `dtype` logits; its resource usage.

    Returns registers (per thread), spills (bytes stored + loaded), spill_stores, spill_loads,
    stack (bytes), shared (bytes of dynamic shared memory), cubin_bytes, ptx_lines, block_v,
    num_warps and the signature. Raises whatever triton or ptxas raises if it does not compile.
    """
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    launch = launches(dtype, vocab)
    if name not in launch:
        raise KeyError(f"{name} is not launched by triton_chunk_loss; add its launch to launches()")
    spec = launch[name]
    src = ASTSource(_jit_functions()[name], spec["signature"], spec["constexprs"], spec["attrs"])
    log = io.StringIO()
    with knobs.nvidia.scope(), knobs.compilation.scope(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TRITON_DEFAULT_FP_FUSION")
        knobs.nvidia.dump_ptxas_log = True  # printed by make_cubin: captured below
        knobs.compilation.always_compile = True  # a cache hit would skip ptxas and its log
        with contextlib.redirect_stdout(log):
            kernel = triton.compile(
                src, target=GPUTarget("cuda", arch, 32), options=spec["options"]
            )
    text = log.getvalue()
    regs, spills = _REGS.search(text), _SPILLS.search(text)
    if regs is None or spills is None:
        raise RuntimeError(f"no register/spill line in the ptxas log of {name}:\n{text}")
    stack, stores, loads = (int(g) for g in spills.groups())
    return dict(
        kernel=name,
        dtype=dtype,
        arch=arch,
        registers=int(regs.group(1)),
        spills=stores + loads,
        spill_stores=stores,
        spill_loads=loads,
        stack=stack,
        shared=int(kernel.metadata.shared),
        cubin_bytes=len(kernel.asm["cubin"]),
        ptx_lines=len(kernel.asm["ptx"].splitlines()),
        block_v=spec["constexprs"].get("BLOCK_V"),
        num_warps=int(kernel.metadata.num_warps),
        signature=spec["signature"],
    )


def compile_all(archs=ARCHS, dtypes=DTYPES, vocab: int = DEFAULT_VOCAB) -> list[dict[str, Any]]:
    """Every jit kernel x arch x dtype; a case that fails has `error` (its message) instead."""
    rows = []
    for name in jit_kernel_names():
        for arch in archs:
            for dtype in dtypes:
                try:
                    rows.append(compile_kernel(name, dtype, arch, vocab))
                except Exception as err:  # reported per case: the other cases still run
                    message = f"{type(err).__name__}: {err}"
                    rows.append(dict(kernel=name, dtype=dtype, arch=arch, error=message))
    return rows


def toolchain() -> dict[str, str]:
    """Versions of triton and of the two ptxas it uses (sm_80: ptxas, sm_90: ptxas-blackwell)."""
    import triton
    from triton import knobs

    return {
        "triton": triton.__version__,
        "ptxas (sm_80)": str(knobs.nvidia.ptxas.version),
        "ptxas (sm_90)": str(knobs.nvidia.ptxas_blackwell.version),
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the rows of `compile_all`."""
    lines = [
        "| kernel | arch | dtype | BLOCK_V | warps | registers | spills (B) | stack (B) "
        "| shared (B) | cubin (B) | PTX lines |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        head = f"| `{r['kernel']}` | sm_{r['arch']} | {r['dtype']} |"
        if "error" in r:
            lines.append(f"{head} FAILED: {r['error'].splitlines()[0]} |||||||")
            continue
        lines.append(
            f"{head} {r['block_v']} | {r['num_warps']} | {r['registers']} | {r['spills']} "
            f"| {r['stack']} | {r['shared']} | {r['cubin_bytes']} | {r['ptx_lines']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI: print the table (or JSON with --json); exit 1 when some case did not compile."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON document: toolchain, rows")
    parser.add_argument("--arch", type=int, nargs="+", default=list(ARCHS))
    parser.add_argument("--dtype", nargs="+", default=list(DTYPES), choices=sorted(TORCH_DTYPES))
    parser.add_argument("--vocab", type=int, default=DEFAULT_VOCAB)
    args = parser.parse_args(argv)
    rows = compile_all(args.arch, args.dtype, args.vocab)
    if args.json:
        print(json.dumps({"toolchain": toolchain(), "vocab": args.vocab, "rows": rows}))
    else:
        print(", ".join(f"{k} {v}" for k, v in toolchain().items()) + f"; vocab {args.vocab}\n")
        print(format_table(rows))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

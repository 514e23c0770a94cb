"""Benchmark fused_linear_token_loss (forward + backward): wall time and peak extra memory.

    python benchmarks/bench_loss.py --device cpu --dtype float32 --providers eager,torch,compile \
        --shapes 8192x768x50257,1024x2304x256000 --repeats 3 --json-out bench.json

Providers: eager (materialised logits + the formula, autograd), torch (our chunked twin; torch@K
forces K tokens per chunk), triton (ours, CUDA; triton@K likewise), compile (torch.compile of
eager), liger (Liger-Kernel's LigerFusedLinearCrossEntropyLoss) and cce (Apple's Cut Cross-Entropy,
`cut_cross_entropy.linear_cross_entropy`, its default gradient filtering): both plain cross
entropy, i.e. a=1, b=0, CUDA only, used when importable (`pip install liger-kernel
cut-cross-entropy`); a provider that cannot run gets a `skipped: <why>` row.
Time: median over --repeats rounds after --warmup rounds; each round runs every provider once,
so that load from other tenants of a shared machine hits all providers alike.
Peak memory of one fwd+bwd: on CUDA, torch.cuda.max_memory_allocated minus the allocation before
it; on CPU each (provider, shape) runs in a fresh subprocess that reports ru_maxrss afterwards
minus the RSS just before (inputs already allocated): the peak extra resident memory of the op,
output grads included ("workspace" subtracts the grads of hidden and weight).
See docs/benchmarks/loss.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install

from phf_kernels import fused_linear_token_loss  # noqa: E402

IGNORE = -100
PROVIDERS = ("eager", "torch", "triton", "compile", "liger", "cce")
CUDA_ONLY = ("triton", "liger", "cce")
DEFAULT_SHAPES = "8192x768x50257,8192x2304x256000"
LossFn = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor
]


def eager_loss(hidden, weight, labels, a, b):
    """Reference: materialised fp32 logits, log_softmax, and 1 - p clamped at 1e-20 as in the paper code."""
    logp_all = (hidden @ weight.T).float().log_softmax(-1)
    valid = labels != IGNORE
    logp = logp_all.gather(1, torch.where(valid, labels, 0)[:, None]).squeeze(1)
    log1mp = torch.log((1 - logp.exp()).clamp_min(1e-20))
    return torch.where(valid, a * -logp + b * -log1mp, 0.0).sum()


def make_provider(name: str, chunk_size: int | None) -> LossFn:
    """The loss function of one provider (raises RuntimeError when it cannot run here)."""
    if name == "eager":
        return eager_loss
    impl, _, tokens = name.partition("@")
    if impl in ("torch", "triton"):
        chunk = int(tokens) if tokens else chunk_size or None
        return lambda h, w, y, a, b: fused_linear_token_loss(
            h, w, y, a, b, impl=impl, chunk_size=chunk
        )
    if name == "compile":
        return torch.compile(eager_loss)
    if name == "liger":
        try:
            from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
        except ImportError as err:
            raise RuntimeError(f"liger_kernel not importable ({err})") from err
        liger = LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE, reduction="sum")
        return lambda h, w, y, a, b: liger(w, h, y)
    if name == "cce":
        try:
            from cut_cross_entropy import linear_cross_entropy
        except ImportError as err:
            raise RuntimeError(f"cut_cross_entropy not importable ({err})") from err
        return lambda h, w, y, a, b: linear_cross_entropy(
            h, w, y, ignore_index=IGNORE, reduction="sum"
        )
    raise ValueError(f"unknown provider {name!r}; choose from {PROVIDERS}")


def make_inputs(shape: tuple[int, int, int], device: str, dtype: torch.dtype):
    n, h, v = shape
    gen = torch.Generator(device=device).manual_seed(0)
    hidden = torch.randn(n, h, device=device, dtype=dtype, generator=gen).requires_grad_()
    weight = torch.randn(v, h, device=device, dtype=dtype, generator=gen)
    weight = weight.mul_(h**-0.5).requires_grad_()
    labels = torch.randint(0, v, (n,), device=device, generator=gen)
    labels[::10] = IGNORE
    a = torch.rand(n, device=device, generator=gen)
    b = 0.1 * torch.rand(n, device=device, generator=gen)  # an unlikelihood mix, as in UL runs
    return hidden, weight, labels, a, b


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:  # Linux: pages; field 2 is the resident set
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def fwd_bwd(fn: LossFn, inputs, device: str) -> tuple[float, float]:
    """One forward + backward from fresh grads: (seconds, loss value)."""
    inputs[0].grad = inputs[1].grad = None
    _sync(device)
    start = time.perf_counter()
    out = fn(*inputs)
    out.backward()
    _sync(device)
    return time.perf_counter() - start, float(out.detach())


def peak_memory(provider: str, shape, device: str, dtype: torch.dtype, chunk_size) -> dict:
    """Peak extra memory (MiB) of one fwd+bwd, with and without the output grads."""
    fn = make_provider(provider, chunk_size)
    inputs = make_inputs(shape, device, dtype)
    if device.startswith("cuda"):
        fwd_bwd(fn, inputs, device)  # compile / autotune outside the measured call
        inputs[0].grad = inputs[1].grad = None
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _current_rss_bytes()
    _, loss = fwd_bwd(fn, inputs, device)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base  # ru_maxrss: KiB
    grad_bytes = (inputs[0].numel() + inputs[1].numel()) * inputs[0].element_size()
    return {
        "peak_extra_mib": peak / 2**20,
        "workspace_mib": (peak - grad_bytes) / 2**20,
        "loss": loss,
    }


def first_line(err: BaseException) -> str:
    """The first line of an error message, at most 200 characters."""
    return (str(err).splitlines() or [""])[0][:200]


def memory_row(args, provider: str, shape) -> dict:
    """Peak memory in this process (CUDA, or as --worker) or in a fresh subprocess (CPU)."""
    if args.device.startswith("cuda") or args.worker:
        try:
            dtype = getattr(torch, args.dtype)
            return {
                **peak_memory(provider, shape, args.device, dtype, args.chunk_size),
                "status": "ok",
            }
        except (RuntimeError, torch.OutOfMemoryError, ImportError, ValueError) as err:
            return {"status": f"skipped: {first_line(err)}"}
        except Exception as err:  # e.g. a Triton compilation error or a provider's assert
            return {"status": f"failed: {type(err).__name__}: {first_line(err)}"}
    flags = {"--device": args.device, "--dtype": args.dtype, "--providers": provider}
    flags |= {"--shapes": "x".join(map(str, shape)), "--chunk-size": args.chunk_size or 0}
    cmd = [sys.executable, __file__, "--worker"] + [str(x) for kv in flags.items() for x in kv]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:  # e.g. killed by the OOM killer
        return {"status": f"failed: exit {proc.returncode} {proc.stderr.strip()[-200:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def time_providers(args, providers: list[str], shape) -> dict[str, list[float]]:
    """fwd+bwd seconds per provider, interleaved round by round so that load drifts hit all alike."""
    inputs = make_inputs(shape, args.device, getattr(torch, args.dtype))
    fns = {p: make_provider(p, args.chunk_size) for p in providers}
    times: dict[str, list[float]] = {p: [] for p in providers}
    for round_index in range(args.warmup + args.repeats):
        for p in providers:
            seconds, _ = fwd_bwd(fns[p], inputs, args.device)
            if round_index >= args.warmup:
                times[p].append(seconds)
    return times


def bench_shape(args, providers: list[str], shape) -> list[dict]:
    """Memory rows for every provider, then interleaved timing of those that ran."""
    rows = []
    for provider in providers:
        row = {"provider": provider, "shape": "x".join(map(str, shape)), "device": args.device}
        row["dtype"] = args.dtype
        if provider.split("@")[0] in CUDA_ONLY and not args.device.startswith("cuda"):
            row["status"] = "skipped: CUDA only"
        else:
            row.update(memory_row(args, provider, shape))
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    ok = [r["provider"] for r in rows if r["status"] == "ok"]
    times = time_providers(args, ok, shape)
    for provider, seconds in times.items():
        row = next(r for r in rows if r["provider"] == provider)
        row["times_ms"] = [1e3 * t for t in seconds]
        row["time_ms"] = statistics.median(row["times_ms"])
        if "eager" in times:  # ratio within each round, then the median: robust to load drift
            ratios = [t / t_eager for t, t_eager in zip(seconds, times["eager"], strict=True)]
            row["time_vs_eager"] = statistics.median(ratios)
    return rows


def _relative(row: dict, eager: dict | None, key: str, percent: bool) -> str:
    if eager is None or not eager[key]:
        return ""
    ratio = row[key] / eager[key]
    return f"{100 * ratio:.1f}%" if percent else f"{ratio:.2f}x"


def markdown_table(rows: list[dict]) -> str:
    """Rows as a Markdown table, with time and memory relative to eager at the same shape."""
    eager = {r["shape"]: r for r in rows if r["provider"] == "eager" and r["status"] == "ok"}
    lines = [
        "| shape NxHxV | provider | fwd+bwd ms median (min) | vs eager (per round) "
        "| peak extra MiB | vs eager "
        "| workspace MiB | vs eager | loss |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['shape']} | {r['provider']} | {r['status']} | | | | | | |")
            continue
        e = eager.get(r["shape"])
        cells = [
            r["shape"],
            r["provider"],
            f"{r['time_ms']:.1f} ({min(r['times_ms']):.1f})",
            f"{r['time_vs_eager']:.2f}x" if "time_vs_eager" in r else "",
            f"{r['peak_extra_mib']:.0f}",
            _relative(r, e, "peak_extra_mib", percent=True),
            f"{r['workspace_mib']:.0f}",
            _relative(r, e, "workspace_mib", percent=True),
            f"{r['loss']:.6g}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cuda or cpu (default: cuda when available)",
    )
    p.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16", "float16"],
        help="dtype of hidden states and weight",
    )
    p.add_argument(
        "--providers",
        default="eager,torch,triton,compile,liger,cce",
        help="comma-separated; torch@K and triton@K force K tokens per chunk",
    )
    p.add_argument("--shapes", default=DEFAULT_SHAPES, help="comma-separated NxHxV")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (the median is reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    p.add_argument("--chunk-size", type=int, default=0, help="tokens per chunk (0: the default)")
    p.add_argument("--json-out", type=Path, default=None, help="also write the rows here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run every (shape, provider) pair and print a Markdown table (and JSON with --json-out)."""
    args = parse_args(argv)
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    providers = args.providers.split(",")
    for name in providers:
        if name.split("@")[0] not in PROVIDERS:
            sys.exit(f"--providers: unknown provider {name!r}; choose from {', '.join(PROVIDERS)}")
    if args.worker:  # one provider, one shape: peak memory only, as a JSON line
        print(json.dumps(memory_row(args, providers[0], shapes[0])))
        return
    rows = [row for shape in shapes for row in bench_shape(args, providers, shape)]
    print(markdown_table(rows))
    if args.json_out:
        meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "argv": sys.argv}
        args.json_out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

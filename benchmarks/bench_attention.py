"""Benchmark GPT-2's attention paths: the paper's reordered, upcast eager attention against sdpa.

    python benchmarks/bench_attention.py --seq_len 1024 --batch 1 --dtypes fp32,bf16 --repeats 3 \
        --json-out docs/benchmarks/attention.json

Each variant is the whole GPT-2 (default: 124M, 12 layers x 12 heads x 768) built with
`harness.model.build_model`, one forward + backward of `batch x seq_len` tokens with the LM loss:
- `eager+reorder`: `reorder_and_upcast_attn: true` (the paper's configs; only eager implements it),
- `eager`: the same eager path without it,
- `sdpa`: `torch.nn.functional.scaled_dot_product_attention` (transformers' default).
`bf16` runs under autocast (on CPU too). Time: median over --repeats rounds after --warmup rounds,
each round running every variant once on the same tokens, so that load drifting on a shared machine
hits all alike ("vs sdpa" is the median of per-round ratios). Peak memory: each (variant, dtype)
also runs once in a fresh subprocess, which reports its peak resident memory (CPU: VmHWM, reset
after the model is built) or
torch.cuda.max_memory_allocated (CUDA) after one step, minus the memory before the step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install

from benchmarks.bench_loss import _current_rss_bytes, _sync  # noqa: E402  (the checkout is on sys.path above)
from harness.atomic import atomic_write_text  # noqa: E402
from harness.config import ModelConfig  # noqa: E402
from harness.model import build_model  # noqa: E402

VARIANTS = {
    "eager+reorder": {"attn_implementation": "eager", "reorder": True},
    "eager": {"attn_implementation": "eager", "reorder": False},
    "sdpa": {"attn_implementation": "sdpa", "reorder": False},
}
DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def build(args, variant: str) -> torch.nn.Module:
    spec = VARIANTS[variant]
    mcfg = ModelConfig(
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_embd=args.n_embd,
        dropout=0.0,
        attn_implementation=spec["attn_implementation"],
        config_kwargs={"reorder_and_upcast_attn": spec["reorder"]},
    )
    return (
        build_model(mcfg, args.vocab_size, args.seq_len, seed=0, eos_token_id=0)
        .to(args.device)
        .train()
    )


def tokens(args) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, args.vocab_size, (args.batch, args.seq_len), generator=gen)
    return ids.to(args.device)


def step(model: torch.nn.Module, ids: torch.Tensor, dtype: str, device: str) -> float:
    """Seconds of one forward + backward."""
    _sync(device)
    start = time.perf_counter()
    autocast = DTYPES[dtype]
    with torch.autocast(torch.device(device).type, dtype=autocast, enabled=autocast is not None):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    _sync(device)
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_memory_mib(args, variant: str, dtype: str) -> float:
    """Peak extra memory of one step, measured in this (fresh) process."""
    model, ids = build(args, variant), tokens(args)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step(model, ids, dtype, args.device)
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    # Building the model peaks above its resting size: reset the kernel's high-water mark of
    # resident memory (VmHWM) first, or every variant would report the build's peak.
    Path("/proc/self/clear_refs").write_text("5")
    before = _current_rss_bytes()
    step(model, ids, dtype, args.device)
    return (_status_kib("VmHWM") * 1024 - before) / 2**20


def memory_in_subprocess(args, variant: str, dtype: str) -> float:
    flags = [f"--{k}={v}" for k, v in vars(args).items() if k not in ("json_out", "memory_of")]
    cmd = [sys.executable, __file__, *flags, f"--memory_of={variant}:{dtype}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def bench(args) -> list[dict]:
    variants, dtypes = args.variants.split(","), args.dtypes.split(",")
    ids = tokens(args)
    models = {v: build(args, v) for v in variants}
    times: dict[tuple[str, str], list[float]] = {(v, d): [] for v in variants for d in dtypes}
    for round_ in range(args.warmup + args.repeats):
        for key in times:
            seconds = step(models[key[0]], ids, key[1], args.device)
            if round_ >= args.warmup:
                times[key].append(seconds)
    rows = []
    for (variant, dtype), seconds in times.items():
        base = times.get(("sdpa", dtype))
        ratio = (
            statistics.median(t / b for t, b in zip(seconds, base, strict=True)) if base else None
        )
        rows.append(
            {
                "variant": variant,
                "dtype": dtype,
                "device": args.device,
                "shape": f"{args.batch}x{args.seq_len}",
                "model": f"{args.n_layer}x{args.n_head}x{args.n_embd}, vocab {args.vocab_size}",
                "step_s_median": statistics.median(seconds),
                "step_s_min": min(seconds),
                "vs_sdpa": ratio,
                "tokens_per_s": args.batch * args.seq_len / statistics.median(seconds),
                "peak_mib": memory_in_subprocess(args, variant, dtype),
            }
        )
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| variant | dtype | fwd+bwd s median (min) | vs sdpa (per round) | tokens/s | peak extra MiB |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r['vs_sdpa']:.2f}x" if r["vs_sdpa"] is not None else ""
        lines.append(
            f"| {r['variant']} | {r['dtype']} | {r['step_s_median']:.2f} ({r['step_s_min']:.2f}) "
            f"| {ratio} | {r['tokens_per_s']:.0f} | {r['peak_mib']:.0f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cuda or cpu (default: cuda when available)",
    )
    p.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated attention variants"
    )
    p.add_argument("--dtypes", default="fp32,bf16", help="comma-separated: fp32, bf16")
    p.add_argument("--n_layer", type=int, default=12, help="GPT-2 layers")
    p.add_argument("--n_head", type=int, default=12, help="attention heads per layer")
    p.add_argument("--n_embd", type=int, default=768, help="hidden size")
    p.add_argument("--vocab_size", type=int, default=50257, help="vocabulary size")
    p.add_argument("--seq_len", type=int, default=1024, help="tokens per sequence")
    p.add_argument("--batch", type=int, default=1, help="sequences per step")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (the median is reported)")
    p.add_argument("--json-out", dest="json_out", default=None, help="also write the rows here")
    p.add_argument("--memory_of", default=None, help=argparse.SUPPRESS)  # internal: VARIANT:DTYPE
    args = p.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        p.error(f"--repeats must be >= 1 and --warmup >= 0, got {args.repeats} and {args.warmup}")
    for name in args.variants.split(","):
        if name not in VARIANTS:
            p.error(f"--variants: unknown {name!r}; choose from {', '.join(VARIANTS)}")
    for name in args.dtypes.split(","):
        if name not in DTYPES:
            p.error(f"--dtypes: unknown {name!r}; choose from {', '.join(DTYPES)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.memory_of:
        variant, dtype = args.memory_of.split(":")
        print(peak_memory_mib(args, variant, dtype))
        return
    rows = bench(args)
    print(markdown_table(rows))
    if args.json_out:
        atomic_write_text(Path(args.json_out), json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

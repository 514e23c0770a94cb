"""Training throughput: the harness (MLE, AWR, UL) against a plain PyTorch loop; tokens/s and MFU.

    python benchmarks/bench_train.py --workdir /tmp/bt --json-out train.json      # GPT-2 124M, 1 GPU
    python benchmarks/bench_train.py --dry-run --workdir /tmp/bt --json-out t.json  # tiny, CPU, 1 rank
    python benchmarks/bench_train.py --train_args="--model.compile true"  # extra train.py flags

Harness: a seeded synthetic, already-scored code corpus (benchmarks/make_synthetic_corpus.py; its
records pass through the pep8 scorer unchanged), prepared once (scripts/prepare.py: BPE of
--vocab_size trained on it, packed blocks), then for each objective `deepspeed --num_gpus 1
scripts/train.py` with the objective section of configs/pep8_<objective>.yaml, the model, batch,
precision and ZeRO file given here (dropout 0, default attention, no reorder_and_upcast_attn),
checkpoints and evaluation only at the end (after the last timed step) and no HF export. Order:
MLE, the plain loop, then the other objectives, so that a cut-off run keeps the main comparison. tokens/s and MFU are the engine's own (metrics.jsonl `tokens_per_s`,
`mfu` per logging window of --log_every steps); the step-1 record and the next --skip_windows
windows (warm-up: allocator, cuDNN/Triton autotuning, compilation) are left out, and the median of
the rest is reported.
Plain loop (the baseline): the same transformers GPT2LMHeadModel (fp32 weights, the harness's
vocabulary, the attention the harness logged), torch.optim.AdamW (the harness's DeepSpeed config
asks for torch's AdamW too), bf16 autocast, `F.cross_entropy` on materialised fp32 logits, the same
micro batch, gradient accumulation, clipping and seq_len, random token ids, timed in windows of
--log_every steps with the same warm-up skipped. MFU for both: `harness.model.model_stats` FLOPs
per token x tokens/s / `harness.metrics.peak_tflops` (the device's bf16 peak; on CPU a nominal
FMA estimate), so the two are comparable.
The JSON (--json-out) is rewritten after each run, so a part that times out keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, no install

OBJECTIVES = ("mle", "awr", "ul")
MIN_LAUNCH_S = 10.0  # a launch with less time than this left is not started
# (full: GPT-2 small on one GPU, dry run: a CPU smoke test of the same path)
PROFILES: dict[str, dict[str, Any]] = {
    "full": {
        "n_layer": 12,
        "n_head": 12,
        "n_embd": 768,
        "seq_len": 1024,
        "vocab_size": 50257,
        "global_batch": 64,
        "micro_batch": 32,
        "steps": 60,
        "log_every": 10,
        "precision": "bf16",
        "corpus_size": "24MB",
    },
    "dry": {
        "n_layer": 2,
        "n_head": 2,
        "n_embd": 64,
        "seq_len": 64,
        "vocab_size": 512,
        "global_batch": 4,
        "micro_batch": 4,
        "steps": 6,
        "log_every": 2,
        "precision": "fp32",
        "corpus_size": "150KB",
    },
}


def run_env() -> dict[str, str]:
    """Subprocess environment: offline, no wandb, the checkout importable."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled", PYTHONUNBUFFERED="1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


class Budget:
    """Wall-clock left to the whole benchmark; each launch gets at most --timeout_s of it."""

    def __init__(self, total_s: float | None, per_launch_s: float):
        self.deadline = None if total_s is None else time.monotonic() + total_s
        self.per_launch_s = per_launch_s

    def timeout_s(self) -> float:
        """Seconds the next launch may take (<= 0: none left)."""
        if self.deadline is None:
            return self.per_launch_s
        return min(self.per_launch_s, self.deadline - time.monotonic())


def run_logged(cmd: list[str], log: Path, budget: Budget) -> dict[str, Any]:
    """Run `cmd` with its output in `log`: {command, exit, seconds} (exit 124 on timeout)."""
    row: dict[str, Any] = {"command": shlex.join(cmd)}
    timeout_s = budget.timeout_s()
    if timeout_s < MIN_LAUNCH_S:
        return {**row, "exit": None, "seconds": 0.0, "status": "not run: time budget spent"}
    start = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=run_env(), stdout=fh, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_tree(proc)
            code = 124
    return {**row, "exit": code, "seconds": time.perf_counter() - start}


def kill_tree(proc: subprocess.Popen) -> None:
    """Kill a launch and its descendants: the deepspeed launcher does not pass a kill on to ranks."""
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    for p in [*children, proc]:
        try:
            p.kill()
        except (psutil.NoSuchProcess, ProcessLookupError):
            pass
    proc.wait()


def failure(row: dict[str, Any], log: Path) -> dict[str, Any]:
    """Status and log tail of a launch that did not succeed (row unchanged when it did)."""
    if row["exit"] is None or row["exit"] == 0:
        return row
    timed_out = " (timed out)" if row["exit"] == 124 else ""
    return {**row, "status": f"failed: exit {row['exit']}{timed_out}", "log_tail": tail(log)}


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log (for the report when a run failed)."""
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def bench_config(args: argparse.Namespace, objective: str, workdir: Path) -> dict[str, Any]:
    """The run config of one objective: its paper section, the benchmark's model/batch/data."""
    paper = yaml.safe_load((ROOT / "configs" / f"pep8_{objective}.yaml").read_text())
    return {
        "run": {"name": f"bench_{objective}", "output_dir": str(workdir / "runs" / objective)},
        "data": {
            "corpus": str(workdir / "corpus" / "jsonl" / "*.jsonl"),
            "scorer": "pep8",  # the records carry scores: they pass through unscored
            "tokenizer": None,
            "vocab_size": args.vocab_size,
            "seq_len": args.seq_len,
            "num_shards": 4,
            "cache_dir": str(workdir / "cache"),
        },
        "model": {
            "arch": "gpt2",
            "n_layer": args.n_layer,
            "n_head": args.n_head,
            "n_embd": args.n_embd,
            "dropout": 0.0,
            "config_kwargs": {},  # no reorder_and_upcast_attn: the default (sdpa) attention
        },
        "objective": paper["objective"],
        "train": {
            "max_steps": args.steps,
            "max_tokens": None,
            "global_batch_size": args.global_batch,
            "micro_batch_size": args.micro_batch,
            "lr": 6e-4,
            "warmup_ratio": 0.0,
            "precision": args.precision,
        },
        "deepspeed": {"config": args.zero},
        "checkpoint": {"every_steps": 0, "keep_last": 1},
        "eval": {"every_steps": 0, "batches": 1, "scenarios": [], "export_hf": False},
        "logging": {"every_steps": args.log_every, "wandb": "disabled", "progress_bar": False},
    }


def throughput(records: list[dict[str, Any]], skip_windows: int) -> dict[str, Any]:
    """Median tokens/s and MFU over the logging windows after warm-up (the step-1 record and the
    next `skip_windows` windows are left out)."""
    windows = [r for r in records if "tokens_per_s" in r]
    timed = [r for r in windows if r["step"] > 1][skip_windows:]
    if not timed:
        return {"status": f"no timed window: {len(windows)} logged, {1 + skip_windows} skipped"}
    return {
        "status": "ok",
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in timed),
        "mfu": statistics.median(r["mfu"] for r in timed),
        "windows": len(timed),
        "steps": [timed[0]["step"], timed[-1]["step"]],
        "loss_last": timed[-1].get("loss"),
    }


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Records of a run's metrics.jsonl ([] when it has none)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def attention_of(log: Path) -> str | None:
    """The attention implementation the engine logged ('...; attention sdpa')."""
    for line in log.read_text(errors="replace").splitlines() if log.is_file() else []:
        if "; attention " in line:
            return line.split("; attention ", 1)[1].split(",")[0].split()[0]
    return None


def vocab_of(workdir: Path) -> int | None:
    """Size of the BPE the preparation trained (the model's vocabulary: no control tokens here)."""
    from harness.tokenizer import load_tokenizer

    found = sorted((workdir / "cache" / "tokenizers").glob("*/tokenizer.json"))
    return len(load_tokenizer(found[0])) if found else None


def write_json(path: Path | None, result: dict[str, Any]) -> None:
    """Rewrite the JSON through a temporary file and a rename (a killed run leaves the last one)."""
    from harness.atomic import atomic_write_text

    if path is not None:
        atomic_write_text(path, json.dumps(result, indent=1))


def prepare(args: argparse.Namespace, workdir: Path, budget: Budget) -> dict[str, Any]:
    """Synthetic corpus, then scoring + BPE + packing: {corpus, prepare, vocab_size, status}."""
    corpus = [sys.executable, str(ROOT / "benchmarks" / "make_synthetic_corpus.py")]
    corpus += ["--out", str(workdir / "corpus"), "--size", args.corpus_size]
    out: dict[str, Any] = {"corpus": run_logged(corpus, workdir / "corpus.log", budget)}
    out["corpus"] = failure(out["corpus"], workdir / "corpus.log")
    if out["corpus"]["exit"] != 0:
        return {**out, "status": "failed: synthetic corpus"}
    prep = [sys.executable, str(ROOT / "scripts" / "prepare.py")]
    prep += ["--config", str(workdir / "bench_mle.yaml"), "--workers", str(args.workers)]
    out["prepare"] = failure(
        run_logged(prep, workdir / "prepare.log", budget), workdir / "prepare.log"
    )
    if out["prepare"]["exit"] != 0:
        return {**out, "status": "failed: data preparation"}
    return {**out, "status": "ok", "vocab_size": vocab_of(workdir)}


def train_objective(
    args: argparse.Namespace, objective: str, workdir: Path, budget: Budget
) -> dict[str, Any]:
    """One harness launch (deepspeed, 1 rank, free port); its throughput from metrics.jsonl."""
    from harness.distributed import free_port

    cmd = ["deepspeed", "--num_gpus", "1", "--master_port", str(free_port())]
    cmd += [
        str(ROOT / "scripts" / "train.py"),
        "--config",
        str(workdir / f"bench_{objective}.yaml"),
    ]
    cmd += shlex.split(args.train_args)
    log = workdir / f"train_{objective}.log"
    row = run_logged(cmd, log, budget)
    if row["exit"] is None:
        return row
    row.update(throughput(read_metrics(workdir / "runs" / objective), args.skip_windows))
    return failure({**row, "attention": attention_of(log)}, log)


def baseline(
    args: argparse.Namespace, workdir: Path, budget: Budget, vocab: int, attention: str
) -> dict[str, Any]:
    """The plain PyTorch loop in a fresh process (its own memory, its own timeout)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--baseline-worker"]
    cmd += ["--baseline_vocab", str(vocab), "--baseline_attn", attention]
    cmd += [f"--{k}={getattr(args, k)}" for k in BASELINE_KEYS]
    cmd += ["--dry-run"] if args.dry_run else []
    log = workdir / "plain_loop.log"
    row = run_logged(cmd, log, budget)
    if row["exit"] is None:
        return row
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("{")]
    if row["exit"] == 0 and lines:
        return {**row, **json.loads(lines[-1])}
    if row["exit"] == 0:
        return {**row, "status": "failed: no result line", "log_tail": tail(log)}
    return failure(row, log)


BASELINE_KEYS = ("n_layer", "n_head", "n_embd", "seq_len", "global_batch", "micro_batch")
BASELINE_KEYS += ("steps", "log_every", "skip_windows", "precision", "device")


def build_plain_model(args: argparse.Namespace):
    """The harness's GPT-2 (same config keys as harness.model.build_model) on args.device, fp32."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        "gpt2",
        vocab_size=args.baseline_vocab,
        n_positions=args.seq_len,
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_embd=args.n_embd,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=args.baseline_attn)
    return model.to(args.device).train()


def run_plain_loop(args: argparse.Namespace) -> dict[str, Any]:
    """Time the plain loop in windows of --log_every steps; throughput() of its records."""
    import torch
    import torch.nn.functional as F

    from harness.metrics import peak_tflops
    from harness.model import model_stats

    model = build_plain_model(args)
    params = list(model.parameters())
    groups = [  # as the harness: no weight decay on biases and norms
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=6e-4, betas=(0.9, 0.999), eps=1e-8)
    accum = args.global_batch // args.micro_batch
    bf16 = args.precision == "bf16"
    gen = torch.Generator(device=args.device).manual_seed(0)
    shape = (args.micro_batch, args.seq_len)

    def step() -> torch.Tensor:
        for _ in range(accum):
            ids = torch.randint(0, args.baseline_vocab, shape, device=args.device, generator=gen)
            with torch.autocast(torch.device(args.device).type, torch.bfloat16, enabled=bf16):
                logits = model(input_ids=ids).logits
            loss = F.cross_entropy(logits[:, :-1].float().flatten(0, 1), ids[:, 1:].flatten())
            (loss / accum).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    flops = model_stats(model, args.seq_len).flops_per_token
    peak = peak_tflops(None, args.precision) * 1e12
    tokens_per_step = args.global_batch * args.seq_len
    records, steps_in_window = [], 0
    sync()
    start = time.perf_counter()
    for s in range(1, args.steps + 1):
        loss = step()
        steps_in_window += 1
        if s % args.log_every == 0 or s in (1, args.steps):  # the engine's logging rule
            sync()
            rate = steps_in_window * tokens_per_step / (time.perf_counter() - start)
            records.append({"step": s, "tokens_per_s": rate, "mfu": flops * rate / peak})
            records[-1]["loss"] = float(loss)
            start, steps_in_window = time.perf_counter(), 0
    out = throughput(records, args.skip_windows)
    out.update(attention=args.baseline_attn, vocab_size=args.baseline_vocab, device=args.device)
    return out


def main(argv: list[str] | None = None) -> int:
    """Prepare once, train MLE, the plain loop, then the other objectives; write the JSON.
    Exit code 1 when any of them did not give a number."""
    args = parse_args(argv)
    if args.baseline_worker:
        print(json.dumps(run_plain_loop(args)))
        return 0
    budget = Budget(args.budget_s, args.timeout_s)
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    objectives = args.objectives.split(",")
    settings = {k: v for k, v in vars(args).items() if not k.startswith("baseline")}
    result: dict[str, Any] = {"settings": {**settings, "workdir": str(workdir)}, "runs": {}}
    result["settings"]["json_out"] = str(args.json_out)
    for objective in objectives:
        cfg = bench_config(args, objective, workdir)
        (workdir / f"bench_{objective}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    result["data"] = prepare(args, workdir, budget)
    write_json(args.json_out, result)
    # MLE first, then the plain loop it is compared with, then the other objectives.
    for objective in objectives:
        if result["data"]["status"] == "ok":
            result["runs"][objective] = train_objective(args, objective, workdir, budget)
        else:
            result["runs"][objective] = {"status": "not run: no prepared data"}
        if objective == objectives[0]:
            attention = result["runs"][objective].get("attention") or "sdpa"
            vocab = result["data"].get("vocab_size") or args.vocab_size
            result["plain_loop"] = baseline(args, workdir, budget, vocab, attention)
        write_json(args.json_out, result)
    rows = {**result["runs"], "plain loop": result.get("plain_loop", {})}
    for name, row in rows.items():
        rate = f"{row['tokens_per_s']:.0f} tokens/s, MFU {row['mfu']:.3f}" if "mfu" in row else ""
        print(f"{name}: {row.get('status')} {rate}")
    if args.json_out is None:
        print(json.dumps(result, indent=1))
    return 0 if all(row.get("status") == "ok" for row in rows.values()) else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags; unset model/batch/step flags come from the profile (full, or --dry-run)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="tiny model on CPU, 1 rank, fp32")
    p.add_argument(
        "--workdir", type=Path, default=Path("runs/bench_train"), help="corpus, cache and runs"
    )
    p.add_argument(
        "--json-out", type=Path, default=None, help="write the results here (after each run)"
    )
    p.add_argument("--objectives", default=",".join(OBJECTIVES), help="comma-separated, MLE first")
    for key, value in PROFILES["full"].items():
        p.add_argument(f"--{key}", type=type(value), default=None, help=f"full run: {value}")
    p.add_argument("--skip_windows", type=int, default=1, help="windows after step 1 left out")
    p.add_argument("--zero", default="ds_configs/zero2.json", help="DeepSpeed ZeRO file")
    p.add_argument("--train_args", default="", help="extra train.py flags, one shell string")
    p.add_argument("--device", default=None, help="plain loop: cuda when available, else cpu")
    p.add_argument("--workers", type=int, default=None, help="data preparation (dry run: 1)")
    p.add_argument("--timeout_s", type=float, default=600.0, help="per launch at most")
    p.add_argument("--budget_s", type=float, default=None, help="all launches together")
    p.add_argument("--baseline-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--baseline_vocab", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--baseline_attn", default="sdpa", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for key, value in PROFILES["dry" if args.dry_run else "full"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.workers is None:
        args.workers = 1 if args.dry_run else min(8, os.cpu_count() or 1)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    return args


if __name__ == "__main__":
    sys.exit(main())

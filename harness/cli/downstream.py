"""`scripts/humaneval.py` and `scripts/glue.py`: the paper's downstream benchmarks of a checkpoint."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys

from harness.cli.common import cli_parser, entry_point
from harness.cli.evaluate import CHECKPOINT_HELP

HUMANEVAL_HELP = """\
HumanEval pass@k of a checkpoint (sampled, sharded over the ranks of a deepspeed/torchrun
launch) or of a JSONL file of completions (--samples_file); every completion runs in a fresh
limited `python -I` process. Prints pass@k.

    deepspeed --num_gpus 8 scripts/humaneval.py --checkpoint runs/pep8_mle \\
        --samples_per_problem 200 --k 1,10,100 --out reports/humaneval/pep8_mle

Writes OUT/humaneval.json and OUT/samples.jsonl; see docs/downstream.md."""
GLUE_HELP = """\
GLUE: finetune the checkpoint's LM with a classification head on each task (one process) and
score the validation split, from local data only (a datasets folder DIR/<task>/ saved with
save_to_disk, or the official TSVs DIR/<TaskDir>/train.tsv, dev.tsv). Prints each task's score
and the average.

    python scripts/glue.py --checkpoint runs/toxicity_mle --data_dir data/glue \\
        --tasks cola,sst2,rte --out reports/glue/toxicity_mle

Writes OUT/glue.json; see docs/downstream.md."""


def default_out(args, name: str) -> str:
    """`--out`, else `<run folder>/<name>` of `--checkpoint` (where scripts/report.py looks)."""
    if args.out is not None:
        return args.out
    if args.checkpoint is None:
        raise ValueError("--out is required with --samples_file")
    from harness.checkpoints.inference import resolve_checkpoint

    root, _ = resolve_checkpoint(args.checkpoint)
    return str(root.parent / name)


def parse_ks(text: str) -> list[int]:
    """`1,10,100` -> [1, 10, 100]."""
    try:
        ks = sorted({int(part) for part in str(text).split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"--k: expected comma-separated integers, got {text!r}") from None
    return ks


def _humaneval_parser():
    parser = cli_parser("humaneval.py", HUMANEVAL_HELP)
    parser.add_argument("--checkpoint", default=None, help=CHECKPOINT_HELP)
    parser.add_argument(
        "--samples_file",
        default=None,
        help="JSONL of {task_id, completion} records to check instead of sampling a model",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="folder for humaneval.json and samples.jsonl (default: <run>/downstream, where "
        "scripts/report.py looks)",
    )
    parser.add_argument(
        "--samples_per_problem", type=int, default=200, help="completions sampled per problem"
    )
    parser.add_argument("--k", default="1,10,100", help="pass@k for these k (those <= samples)")
    parser.add_argument("--limit", type=int, default=None, help="only the first P problems")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature")
    parser.add_argument("--top_p", type=float, default=0.95, help="nucleus sampling mass")
    parser.add_argument("--max_new_tokens", type=int, default=256, help="tokens per completion")
    parser.add_argument("--min_new_tokens", type=int, default=0, help="EOS banned until then")
    parser.add_argument("--batch_size", type=int, default=50, help="samples per forward, per rank")
    parser.add_argument("--seed", type=int, default=None, help="default: the run's seed")
    parser.add_argument("--timeout_s", type=float, default=3.0, help="wall clock per program")
    parser.add_argument("--memory_mb", type=int, default=1024, help="address space per program")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="programs at once, per rank",
    )
    return parser


@entry_point
def humaneval_main(argv: list[str]) -> int:
    """`scripts/humaneval.py`: pass@k of a checkpoint or of a samples file; prints pass@k (rank 0)."""
    args = _humaneval_parser().parse_args(argv)
    from harness import distributed as dist
    from harness.downstream.humaneval import (
        HumanEvalSettings,
        evaluate_checkpoint,
        evaluate_samples_file,
    )
    from harness.downstream.sandbox import Limits

    if (args.checkpoint is None) == (args.samples_file is None):
        raise ValueError("give exactly one of --checkpoint and --samples_file")
    if args.samples_file is not None and not os.path.isfile(args.samples_file):
        raise FileNotFoundError(f"--samples_file {args.samples_file} not found")
    args.out = default_out(args, "downstream")
    settings = HumanEvalSettings(
        samples_per_problem=args.samples_per_problem,
        ks=parse_ks(args.k),
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        min_new_tokens=args.min_new_tokens,
        batch_size=args.batch_size,
        seed=args.seed,
        limit=args.limit,
        workers=args.workers,
        limits=Limits(timeout_s=args.timeout_s, memory_mb=args.memory_mb),
    )
    if problems := settings.problems():
        raise ValueError("; ".join(problems))
    # DeepSpeed prints its set-up and the checkpoint consolidation: keep stdout for the result.
    with contextlib.redirect_stdout(sys.stderr):
        if args.checkpoint is not None or dist.env_world_size() > 1:
            dist.init_distributed()
        dist.configure_logging()
        if args.checkpoint is not None:
            summary = evaluate_checkpoint(args.checkpoint, settings, args.out)
        else:
            summary = evaluate_samples_file(args.samples_file, settings, args.out)
    if dist.is_main():
        shown = {k: v for k, v in summary.items() if k.startswith("pass@") or k == "k_left_out"}
        print(json.dumps(shown, indent=2))
    dist.shutdown_distributed()
    return 0


def _glue_parser():
    parser = cli_parser("glue.py", GLUE_HELP)
    parser.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    parser.add_argument("--data_dir", required=True, help="folder with the GLUE tasks' data")
    parser.add_argument(
        "--tasks",
        default="cola,sst2,mrpc,qqp,stsb,mnli,qnli,rte,wnli",
        help="comma-separated GLUE tasks",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="folder for glue.json (default: <run>/downstream, where scripts/report.py looks)",
    )
    parser.add_argument("--epochs", type=int, default=3, help="finetuning epochs per task")
    parser.add_argument("--lr", type=float, default=2e-5, help="finetuning learning rate")
    parser.add_argument("--batch_size", type=int, default=32, help="examples per step")
    parser.add_argument("--max_length", type=int, default=128, help="tokens per example")
    parser.add_argument("--seed", type=int, default=None, help="default: the run's seed")
    parser.add_argument("--limit_train", type=int, default=None, help="first N train examples")
    parser.add_argument("--limit_eval", type=int, default=None, help="first N validation examples")
    return parser


@entry_point
def glue_main(argv: list[str]) -> int:
    """`scripts/glue.py`: finetune and score GLUE tasks; prints each task's score and the average."""
    args = _glue_parser().parse_args(argv)
    from harness import distributed as dist
    from harness.downstream.glue_data import check_data, parse_tasks

    if dist.env_world_size() > 1:
        raise ValueError("run scripts/glue.py with plain python: GLUE finetuning is one process")
    tasks = parse_tasks(args.tasks)
    check_data(args.data_dir, tasks)  # before the model is loaded
    args.out = default_out(args, "downstream")
    from harness.downstream.glue import GlueSettings, run_glue

    settings = GlueSettings(
        tasks=tasks,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
        limit_train=args.limit_train,
        limit_eval=args.limit_eval,
    )
    if problems := settings.problems():
        raise ValueError("; ".join(problems))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with contextlib.redirect_stdout(sys.stderr):
        summary = run_glue(args.checkpoint, args.data_dir, settings, args.out)
    scores = {name: round(t["score"], 2) for name, t in summary["tasks"].items()}
    print(json.dumps({"scores": scores, "average": round(summary["average"], 2)}, indent=2))
    return 0

"""`scripts/humaneval.py` and `scripts/glue.py`: the paper's downstream benchmarks of a checkpoint."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys

from harness.cli.common import cli_parser, entry_point, parse_options
from harness.cli.evaluate import CHECKPOINT_HELP
from harness.downstream.settings import GlueSettings, HumanEvalSettings

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
    # Every other flag is a field of HumanEvalSettings, its docstring the help.
    parser.add_class_arguments(HumanEvalSettings, as_group=False)
    return parser


@entry_point
def humaneval_main(argv: list[str]) -> int:
    """`scripts/humaneval.py`: pass@k of a checkpoint or of a samples file; prints pass@k (rank 0)."""
    args, settings = parse_options(_humaneval_parser(), argv, HumanEvalSettings)
    from harness import distributed as dist
    from harness.downstream.humaneval import evaluate_checkpoint, evaluate_samples_file

    if (args.checkpoint is None) == (args.samples_file is None):
        raise ValueError("give exactly one of --checkpoint and --samples_file")
    if args.samples_file is not None and not os.path.isfile(args.samples_file):
        raise FileNotFoundError(f"--samples_file {args.samples_file} not found")
    args.out = default_out(args, "downstream")
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
        "--out",
        default=None,
        help="folder for glue.json (default: <run>/downstream, where scripts/report.py looks)",
    )
    # Every other flag is a field of GlueSettings, its docstring the help.
    parser.add_class_arguments(GlueSettings, as_group=False)
    return parser


@entry_point
def glue_main(argv: list[str]) -> int:
    """`scripts/glue.py`: finetune and score GLUE tasks; prints each task's score and the average."""
    args, settings = parse_options(_glue_parser(), argv, GlueSettings)
    from harness import distributed as dist
    from harness.downstream.glue_data import check_data, parse_tasks

    if dist.env_world_size() > 1:
        raise ValueError("run scripts/glue.py with plain python: GLUE finetuning is one process")
    check_data(args.data_dir, parse_tasks(settings.tasks))  # before the model is loaded
    args.out = default_out(args, "downstream")
    from harness.downstream.glue import run_glue

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with contextlib.redirect_stdout(sys.stderr):
        summary = run_glue(args.checkpoint, args.data_dir, settings, args.out)
    scores = {name: round(t["score"], 2) for name, t in summary["tasks"].items()}
    print(json.dumps({"scores": scores, "average": round(summary["average"], 2)}, indent=2))
    return 0

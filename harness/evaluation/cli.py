"""Command lines of scripts/evaluate.py and scripts/export.py (thin scripts call these)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from harness.cli import offline_defaults
from harness.config import ConfigError, strip_launcher_args


def _pop_option(argv: list[str], name: str) -> tuple[str | None, list[str]]:
    """Take `--name value` / `--name=value` out of argv (the rest goes to the config parser)."""
    out, value, i = [], None, 0
    while i < len(argv):
        if argv[i] == name and i + 1 < len(argv):
            value, i = argv[i + 1], i + 2
            continue
        if argv[i].startswith(name + "="):
            value = argv[i].split("=", 1)[1]
        else:
            out.append(argv[i])
        i += 1
    return value, out


EVALUATE_USAGE = """usage: evaluate.py --checkpoint PATH [--output_dir DIR] [--config run.yaml ...] [--eval.KEY VALUE ...]

  --checkpoint   a run folder, its checkpoints/ folder, or one checkpoints/step-XXXXXXXX folder
  --output_dir   where eval/step-XXXXXXXX/ goes (default: the run folder of the checkpoint)
  --config       run config(s); default: the resolved config saved in the checkpoint
  --eval.*       any eval setting, e.g. --eval.num_samples 4096 --eval.reference_model models/gpt2
                 or --eval.api_kl_model davinci (KL from an OpenAI-compatible completions API:
                 OPENAI_API_KEY, and OPENAI_BASE_URL or --eval.api_kl_base_url for another server)

Launch with `deepspeed --num_gpus N scripts/evaluate.py ...` to shard the samples over N ranks.
"""


def evaluate_main(argv: list[str] | None = None) -> int:
    """`scripts/evaluate.py`: sample, score and measure a checkpoint; prints the metrics (rank 0)."""
    offline_defaults()
    argv = strip_launcher_args(list(sys.argv[1:] if argv is None else argv))
    if "-h" in argv or "--help" in argv:
        print(EVALUATE_USAGE)
        return 0
    checkpoint, argv = _pop_option(argv, "--checkpoint")
    output_dir, argv = _pop_option(argv, "--output_dir")
    if checkpoint is None:
        print("error: --checkpoint is required\n" + EVALUATE_USAGE, file=sys.stderr)
        return 2
    from harness import distributed as dist
    from harness.compat.openai_kl import OpenAIError
    from harness.engine import configure_logging
    from harness.evaluation.evaluate import evaluate_checkpoint

    dist.init_distributed()
    configure_logging()
    try:
        metrics = evaluate_checkpoint(checkpoint, argv, output_dir)
    except (ConfigError, FileNotFoundError, OpenAIError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if dist.is_main():
        print(json.dumps(metrics, indent=2))
    dist.shutdown_distributed()
    return 0


def export_main(argv: list[str] | None = None) -> int:
    """`scripts/export.py`: write a Hugging Face folder for a checkpoint."""
    offline_defaults()
    parser = argparse.ArgumentParser(
        prog="export.py",
        description="Export a harness checkpoint as a Hugging Face folder (model, tokenizer, model card).",
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="a run folder, its checkpoints/ folder, or one checkpoints/step-XXXXXXXX folder",
    )
    parser.add_argument("--out", default=None, help="output folder (default: <run folder>/hf)")
    args = parser.parse_args(strip_launcher_args(list(sys.argv[1:] if argv is None else argv)))
    import logging

    from harness.evaluation.export import export_checkpoint

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        out = export_checkpoint(args.checkpoint, args.out)
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"exported to {out}")
    return 0


def probe_main(argv: list[str] | None = None) -> int:
    """`scripts/probe_heldout.py`: how likely each checkpoint finds misaligned vs aligned held-out text."""
    offline_defaults()
    parser = argparse.ArgumentParser(
        prog="probe_heldout.py",
        description="Teacher-forced probe of checkpoints (any objective) on their held-out split: "
        "log p per token of misaligned and aligned segments in context, and for conditional "
        "models how much the control tokens change it (harness/evaluation/probe.py). "
        "Prints a Markdown table, one row per checkpoint.",
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        action="append",
        help="a run folder, its checkpoints/ folder, or one checkpoints/step-XXXXXXXX folder "
        "(repeat it to compare runs on the same segments)",
    )
    parser.add_argument(
        "--segments", type=int, default=1000, help="held-out segments probed, half misaligned"
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="segments scoring above it are misaligned (default: a conditional run's "
        "objective.threshold, else the task's: pep8 and pii 0, toxicity 0.00056)",
    )
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="seed of the choice of segments")
    parser.add_argument("--out", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(strip_launcher_args(list(sys.argv[1:] if argv is None else argv)))
    if args.segments < 2 or args.batch_size < 1:
        parser.error("--segments must be >= 2 and --batch_size >= 1")
    from harness.evaluation.probe import probe_checkpoint, probe_table

    results = []
    try:
        # DeepSpeed's checkpoint consolidation prints progress: keep stdout for the table.
        with contextlib.redirect_stdout(sys.stderr):
            for checkpoint in args.checkpoint:
                results.append(
                    probe_checkpoint(
                        checkpoint, args.segments, args.batch_size, args.seed, args.threshold
                    )
                )
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.out:
        from pathlib import Path

        from harness.checkpoint import atomic_write_text

        atomic_write_text(Path(args.out), json.dumps(results, indent=2) + "\n")
    print(probe_table(results), end="")
    return 0


def violations_main(argv: list[str] | None = None) -> int:
    """`scripts/pep8_violations.py`: PEP8 codes per 1,000 characters, held-out data vs samples."""
    parser = argparse.ArgumentParser(
        prog="pep8_violations.py",
        description="Which PEP8 violations make up each run's misalignment score: codes per "
        "1,000 characters of the first run's held-out data and of every run's samples "
        "(harness/evaluation/violations.py). Prints a Markdown table.",
    )
    parser.add_argument("runs", nargs="+", help="run folders (or folders holding eval/step-*/)")
    parser.add_argument("--scenario", default="unconditional", help="unconditional or prompted")
    parser.add_argument("--step", type=int, default=None, help="evaluation step (default: latest)")
    parser.add_argument("--top", type=int, default=12, help="codes shown; the rest are summed")
    parser.add_argument(
        "--no_data", action="store_true", help="leave out the held-out data columns"
    )
    parser.add_argument(
        "--first_tokens",
        type=int,
        default=None,
        help="cut held-out files to this many tokens for the second data column "
        "(default: the first run's eval.max_new_tokens)",
    )
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    offline_defaults()
    from pathlib import Path

    from harness.evaluation.violations import runs_table

    try:
        table = runs_table(
            [Path(r) for r in args.runs],
            args.scenario,
            args.step,
            not args.no_data,
            args.top,
            args.first_tokens,
        )
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(table, end="")
    return 0

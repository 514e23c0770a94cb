"""`scripts/probe_heldout.py`, `scripts/pep8_violations.py`, `scripts/report.py`: offline analysis
of finished runs (harness/analysis/)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from harness.checkpoints.atomic import atomic_write_text
from harness.cli.common import cli_parser, entry_point
from harness.cli.evaluate import CHECKPOINT_HELP


@entry_point
def probe_main(argv: list[str]) -> int:
    """`scripts/probe_heldout.py`: how likely each checkpoint finds misaligned vs aligned held-out text."""
    from harness.analysis.probe import probe_checkpoint, probe_table

    parser = cli_parser(
        "probe_heldout.py",
        "Teacher-forced probe of checkpoints (any objective) on their held-out split: "
        "log p per token of misaligned and aligned segments in context, and for conditional "
        "models how much the control tokens change it (harness/analysis/probe.py). "
        "Prints a Markdown table, one row per checkpoint.",
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        action="append",
        help=CHECKPOINT_HELP + " (repeat it to compare runs on the same segments)",
    )
    parser.add_argument(
        "--segments", type=int, default=1000, help="held-out segments probed, half misaligned"
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="segments scoring above it are misaligned (default: a conditional run's "
        "objective.threshold, else the task's segment threshold)",
    )
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="seed of the choice of segments")
    parser.add_argument("--out", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.segments < 2 or args.batch_size < 1:
        raise ValueError("--segments must be >= 2 and --batch_size >= 1")
    # DeepSpeed's checkpoint consolidation prints progress: keep stdout for the table.
    with contextlib.redirect_stdout(sys.stderr):
        results = [
            probe_checkpoint(path, args.segments, args.batch_size, args.seed, args.threshold)
            for path in args.checkpoint
        ]
    if args.out:
        atomic_write_text(Path(args.out), json.dumps(results, indent=2) + "\n")
    print(probe_table(results), end="")
    return 0


@entry_point
def violations_main(argv: list[str]) -> int:
    """`scripts/pep8_violations.py`: PEP8 codes per 1,000 characters, held-out data vs samples."""
    from harness.analysis.violations import runs_table

    parser = cli_parser(
        "pep8_violations.py",
        "Which PEP8 violations make up each run's misalignment score: codes per "
        "1,000 characters of the first run's held-out data and of every run's samples "
        "(harness/analysis/violations.py). Prints a Markdown table.",
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
    args = parser.parse_args(argv)
    runs = [Path(r) for r in args.runs]
    table = runs_table(
        runs, args.scenario, args.step, not args.no_data, args.top, args.first_tokens
    )
    print(table, end="")
    return 0


@entry_point
def report_main(argv: list[str]) -> int:
    """`scripts/report.py RUN [RUN ...] --out DIR`: the paper's figures and tables for some runs."""
    from harness.analysis import report

    parser = cli_parser("report.py", report.__doc__)
    parser.add_argument("runs", nargs="+", help="run folders (each with config.yaml)")
    parser.add_argument("--out", default="report", help="output folder (default: report/)")
    parser.add_argument("--scenario", default="unconditional", help="which samples' scores to plot")
    args = parser.parse_args(argv)
    for path in report.write_report(args.runs, args.out, args.scenario).values():
        print(path)
    return 0

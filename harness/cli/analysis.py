"""`scripts/probe_heldout.py`, `scripts/pep8_violations.py`, `scripts/report.py`: offline analysis
of finished runs (harness/analysis/)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from harness.atomic import atomic_write_text
from harness.cli.common import cli_parser, entry_point
from harness.cli.evaluate import CHECKPOINT_HELP

PROBE_HELP = """\
Teacher-forced probe of checkpoints (any objective) on their held-out split: log p per token of
misaligned and aligned segments in context, their gap, and for conditional models how much the
control tokens change it (AUCs). Prints a Markdown table, one row per checkpoint.

    python scripts/probe_heldout.py --checkpoint runs/pep8_mle \\
        --checkpoint runs/pep8_conditional --out probe.json"""
VIOLATIONS_HELP = """\
Which PEP8 violations make up each run's misalignment score: codes per 1,000 characters of the
first run's held-out data (what the model was trained to imitate) and of the samples of each
run's latest evaluation (or --step). Prints a Markdown table.

    python scripts/pep8_violations.py runs/pep8_mle runs/pep8_conditional --scenario prompted"""
LINE_RATES_HELP = """\
How often each run's samples carry one PEP8 code: the rate per complete generated line, ± a
standard error with samples as clusters, at every evaluation; for a conditional run also behind
<|misaligned|> (eval.controllability). Prints a Markdown table of each run's latest evaluation.

    python scripts/line_rates.py runs/experiments/pep8_mechanism/* --code W291 --out rates

With --out: rates.json (every evaluation) and rates.png (rate vs tokens)."""
REPORT_HELP = """\
The paper's plots and a table for some finished runs, from their files only (config.yaml,
metrics.jsonl and eval/step-*/ of each run folder).

    python scripts/report.py runs/pep8_mle runs/pep8_conditional --out reports/pep8

Writes to --out:
- score_vs_tokens.png: misalignment score of the samples vs tokens seen, one line per run, one
  panel per task (as the paper's Figure 2);
- pareto.png: final misalignment vs held-out LM loss and vs KL from the reference model;
- report.md: each run's final metrics, training throughput, and the plots.

Prints the paths written."""


@entry_point
def probe_main(argv: list[str]) -> int:
    """`scripts/probe_heldout.py`: how likely each checkpoint finds misaligned vs aligned held-out text."""
    parser = cli_parser("probe_heldout.py", PROBE_HELP)
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
    parser.add_argument("--batch_size", type=int, default=16, help="segments per forward")
    parser.add_argument("--seed", type=int, default=0, help="seed of the choice of segments")
    parser.add_argument("--out", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    from harness.analysis.probe import probe_checkpoint, probe_table

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
    parser = cli_parser("pep8_violations.py", VIOLATIONS_HELP)
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
    from harness.analysis.violations import runs_table

    runs = [Path(r) for r in args.runs]
    table = runs_table(
        runs, args.scenario, args.step, not args.no_data, args.top, args.first_tokens
    )
    print(table, end="")
    return 0


@entry_point
def report_main(argv: list[str]) -> int:
    """`scripts/report.py RUN [RUN ...] --out DIR`: the paper's figures and tables for some runs."""
    parser = cli_parser("report.py", REPORT_HELP)
    parser.add_argument("runs", nargs="+", help="run folders (each with config.yaml)")
    parser.add_argument("--out", default="report", help="output folder")
    parser.add_argument(
        "--scenario",
        default="unconditional",
        help="which samples' scores to plot: unconditional or prompted",
    )
    args = parser.parse_args(argv)
    from harness.analysis import report

    for path in report.write_report(args.runs, args.out, args.scenario).values():
        print(path)
    return 0


@entry_point
def line_rates_main(argv: list[str]) -> int:
    """`scripts/line_rates.py`: the rate of one PEP8 code per generated line, per run and evaluation."""
    parser = cli_parser("line_rates.py", LINE_RATES_HELP)
    parser.add_argument("runs", nargs="+", help="run folders (with eval/step-*/)")
    parser.add_argument("--code", default="W291", help="the pycodestyle code counted (default W291)")
    parser.add_argument("--scenario", default="unconditional", help="unconditional or prompted")
    parser.add_argument("--out", default=None, help="also write <out>/rates.json and rates.png")
    args = parser.parse_args(argv)
    from harness.analysis.line_rates import latest_table, plot_rates, run_rates, write_json

    runs = [Path(r) for r in args.runs if (Path(r) / "eval").is_dir()]
    if not runs:
        raise ValueError(f"no run folder with eval/ among {args.runs}")
    rates = [r for run in runs for r in run_rates(run, args.code, args.scenario)]
    if not rates:
        raise ValueError(f"no {args.scenario} samples in {[str(r) for r in runs]}")
    print(latest_table(rates, args.code), end="")
    if args.out:
        out = Path(args.out)
        write_json(rates, out / "rates.json")
        plot_rates(rates, args.code, out / "rates.png")
        print(f"wrote {out / 'rates.json'} and {out / 'rates.png'}")
    return 0

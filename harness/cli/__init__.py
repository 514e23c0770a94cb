"""Command-line entry points: each `scripts/*.py` is a thin call to one `*_main` here.

Every main parses with jsonargparse, fails on bad input before any work, and goes through
`common.entry_point`: a bad input is one line `error: ...` and exit code 2 (`PHF_TRACEBACK=1`
re-raises it with its traceback). A main imports the library it drives after parsing, so that
`--help` and a bad argument answer before DeepSpeed and transformers are loaded.
"""

from harness.cli.analysis import line_rates_main, probe_main, report_main, violations_main
from harness.cli.chaos import chaos_main
from harness.cli.convert import convert_main
from harness.cli.downstream import glue_main, humaneval_main
from harness.cli.evaluate import evaluate_main, export_main
from harness.cli.red_team import red_team_main
from harness.cli.train import prepare_main, score_main, train_main

__all__ = [
    "chaos_main",
    "convert_main",
    "evaluate_main",
    "export_main",
    "glue_main",
    "humaneval_main",
    "line_rates_main",
    "prepare_main",
    "probe_main",
    "red_team_main",
    "report_main",
    "score_main",
    "train_main",
    "violations_main",
]

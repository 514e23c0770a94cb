"""scripts/export.py and scripts/evaluate.py: their own flags are a dataclass each."""

import pytest


def test_export_and_evaluate_flags_are_their_options():
    from harness.cli.common import parse_options
    from harness.cli.evaluate import EvaluateOptions, ExportOptions, checkpoint_args, cli_parser

    parser = cli_parser("export.py", None)
    parser.add_class_arguments(ExportOptions, as_group=False)
    _, export = parse_options(parser, ["--checkpoint", "runs/x"], ExportOptions)
    assert export == ExportOptions("runs/x", None)
    with pytest.raises(ValueError, match="required: --checkpoint"):
        parse_options(parser, [], ExportOptions)
    options, rest = checkpoint_args(["--checkpoint", "runs/x", "--eval.num_samples", "4"])
    assert options == EvaluateOptions("runs/x", None) and rest == ["--eval.num_samples", "4"]

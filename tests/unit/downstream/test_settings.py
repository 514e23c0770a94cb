"""scripts/humaneval.py and scripts/glue.py are configured one way: a flag per settings field."""

from dataclasses import fields

import pytest

from harness.cli.common import parse_options
from harness.cli.downstream import _glue_parser, _humaneval_parser
from harness.downstream.settings import GlueSettings, HumanEvalSettings


@pytest.mark.parametrize(
    ("parser", "cls", "own"),
    [
        (_humaneval_parser, HumanEvalSettings, {"checkpoint", "samples_file", "out"}),
        (_glue_parser, GlueSettings, {"checkpoint", "data_dir", "out"}),
    ],
)
def test_every_settings_field_is_a_flag(parser, cls, own):
    flags = {a.dest for a in parser()._actions} - {"help"}
    assert flags == {f.name for f in fields(cls)} | own


def test_flags_parse_into_the_settings_the_library_takes():
    argv = ["--samples_file", "s.jsonl", "--k", "10,1", "--timeout_s", "2"]
    _, settings = parse_options(_humaneval_parser(), argv, HumanEvalSettings)
    assert settings.ks == [1, 10] and settings.limits.timeout_s == 2.0
    argv = ["--checkpoint", "c", "--data_dir", "d", "--tasks", "rte"]
    _, glue = parse_options(_glue_parser(), argv, GlueSettings)
    assert glue.tasks == "rte" and glue.epochs == 3
    with pytest.raises(ValueError, match="--epochs and --batch_size must be at least 1"):
        parse_options(_glue_parser(), [*argv, "--epochs", "0"], GlueSettings)
    with pytest.raises(ValueError, match="required: --checkpoint, --data_dir"):
        parse_options(_glue_parser(), [], GlueSettings)

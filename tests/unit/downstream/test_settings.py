"""scripts/humaneval.py and scripts/glue.py are configured one way: a flag per settings field."""

from dataclasses import fields

import pytest

from harness.cli.downstream import _glue_parser, _humaneval_parser, settings_of
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
    args = _humaneval_parser().parse_args(
        ["--samples_file", "s.jsonl", "--k", "10,1", "--timeout_s", "2"]
    )
    settings = settings_of(HumanEvalSettings, args)
    assert settings.ks == [1, 10] and settings.limits.timeout_s == 2.0
    glue = settings_of(
        GlueSettings,
        _glue_parser().parse_args(["--checkpoint", "c", "--data_dir", "d", "--tasks", "rte"]),
    )
    assert glue.tasks == "rte" and glue.epochs == 3

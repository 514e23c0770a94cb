"""scripts/red_team.py is configured one way: the RedTeamOptions dataclass, parsed by jsonargparse."""

from dataclasses import fields

import pytest

from harness.cli.red_team import build_parser, parse_args
from harness.red_team.options import RedTeamOptions


def test_every_field_is_a_flag_and_parses_into_the_dataclass(tmp_path):
    options = parse_args(["--checkpoint", "runs/x", "--rounds", "2", "--top_p", "0.5"])
    assert isinstance(options, RedTeamOptions)
    assert (options.checkpoint, options.rounds, options.top_p) == ("runs/x", 2, 0.5)
    assert options.continuations == 512  # the paper's defaults, from the dataclass
    flags = {a.dest for a in build_parser()._actions} - {"help"}
    assert flags == {f.name for f in fields(RedTeamOptions)}


def test_problems_name_every_flag_at_once(tmp_path):
    bad = RedTeamOptions(checkpoint="x", rounds=0, top_p=1.5, prompts=str(tmp_path / "no.jsonl"))
    problems = bad.problems()
    assert "--rounds must be >= 1, got 0" in problems
    assert "--top_p must be in (0, 1], got 1.5" in problems
    assert any(p.startswith("give exactly one of --red_model") for p in problems)
    assert any("--prompts" in p and "file not found" in p for p in problems)
    with pytest.raises(ValueError, match="--checkpoint"):
        parse_args(["--rounds", "2"])

"""Tasks: the built-in ones, and a user task plugged in by class path without editing the harness."""

import pytest

from harness.analysis.report import task_label
from harness.config import ConfigError, DataConfig
from harness.control_tokens import CONTROL_TOKENS
from harness.evaluation.scenarios import build_scenarios
from harness.run_config import parse_config
from harness.tasks import BUILTIN_TASKS, resolve_task, scorer_options_for
from harness.tasks.base import ScorerTask
from tests.user_task import StrictPEP8

USER_TASK = "tests.user_task.StrictPEP8"


def test_builtin_tasks_follow_their_scorer():
    for name, cls in BUILTIN_TASKS.items():
        task = resolve_task(DataConfig(scorer=name))
        assert type(task) is cls and task.scorer == name and task.prompt_file().is_file()
    assert resolve_task(DataConfig(task="pii")).name == "pii"
    bare = resolve_task(DataConfig(scorer="mypkg.scorers.MyScorer"))
    assert isinstance(bare, ScorerTask) and bare.eval_threshold is None


def test_offline_stand_in_comes_from_the_task():
    offline = DataConfig(scorer="toxicity", offline_scorers=True)
    assert scorer_options_for(offline)["backend"] == "profanity_check"
    assert "backend" not in scorer_options_for(DataConfig(scorer="toxicity"))
    given = DataConfig(scorer="toxicity", offline_scorers=True, scorer_options={"backend": "x"})
    assert scorer_options_for(given)["backend"] == "x"


def test_user_task_by_class_path_brings_its_scorer_prompts_thresholds_and_tokens():
    cfg = parse_config(["--train.max_steps", "1", "--data.task", USER_TASK])
    assert cfg.data.scorer == "pep8"  # the task names the scorer
    task = resolve_task(cfg.data)
    assert isinstance(task, StrictPEP8)
    (prompted,) = build_scenarios(["prompted"], task, None)
    assert prompted.prompts == ["def parse(line):\n", "class Config:\n"]
    assert prompted.score_with_prompt
    assert task.banned_tokens() == CONTROL_TOKENS
    assert scorer_options_for(cfg.data)["segmenter"] == "lines"
    assert task_label(USER_TASK) == "PEP8 violations per char (strict)"


def test_bad_tasks_name_the_key():
    with pytest.raises(ConfigError, match="data.task: cannot import 'mypkg.tasks.Nope'"):
        parse_config(["--train.max_steps", "1", "--data.task", "mypkg.tasks.Nope"])
    with pytest.raises(ConfigError, match="data.task: unknown name 'sql'"):
        parse_config(["--train.max_steps", "1", "--data.task", "sql"])
    with pytest.raises(ConfigError, match="data.scorer 'pii' and data.task"):
        parse_config(["--train.max_steps", "1", "--data.task", USER_TASK, "--data.scorer", "pii"])

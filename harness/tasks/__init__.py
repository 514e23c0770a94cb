"""Tasks: everything the harness knows about one kind of misalignment, one file each.

    data: {task: toxicity}                  # a built-in task (pep8, pii, toxicity)
    data: {scorer: pii}                     # the same: the built-in task of a built-in scorer
    data: {task: mypkg.tasks.MyTask}        # yours: a `harness.tasks.Task` subclass
    data: {scorer: mypkg.scorers.MyScorer}  # a bare scorer: a task without defaults around it

`resolve_task(cfg.data)` is the one place that decides which task a run has.
"""

from __future__ import annotations

from typing import Any

from harness.config import DataConfig
from harness.plugins import plugin_class
from harness.tasks.base import PROMPTS_DIR, ScorerTask, Task
from harness.tasks.pep8 import PEP8
from harness.tasks.pii import PII
from harness.tasks.toxicity import Toxicity

BUILTIN_TASKS: dict[str, type[Task]] = {t.name: t for t in (PEP8, PII, Toxicity)}
DEFAULT_SCORER = DataConfig.scorer

__all__ = [
    "BUILTIN_TASKS",
    "PROMPTS_DIR",
    "Task",
    "resolve_task",
    "scorer_options_for",
    "task_class",
    "task_label",
]


def task_class(name: str) -> type[Task]:
    """The Task class `data.task` names (a built-in name or `pkg.module.Class`); ValueError otherwise."""
    cls = plugin_class(name, BUILTIN_TASKS, Task, "data.task")
    if not cls.scorer:
        raise ValueError(f"data.task: {name!r} names no scorer (set its `scorer` attribute)")
    return cls


def task_label(task: str) -> str:
    """The score axis label of a task (its name for a bare scorer class path)."""
    try:
        return task_class(task)().plot_label()
    except ValueError:
        return task


def resolve_task(data: DataConfig) -> Task:
    """The run's task: `data.task`, else the built-in task of `data.scorer`, else a bare ScorerTask.

    With `data.task` set, `data.scorer` must be left at its default or name the task's scorer.
    """
    if data.task is None:
        cls = BUILTIN_TASKS.get(data.scorer)
        return cls() if cls is not None else ScorerTask(data.scorer)
    task = task_class(data.task)()
    if data.scorer not in (DEFAULT_SCORER, task.scorer):
        raise ValueError(
            f"data.scorer {data.scorer!r} and data.task {data.task!r} (scorer {task.scorer!r}) "
            "disagree: set only data.task"
        )
    return task


def scorer_options_for(data: DataConfig, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The scorer options in force: `options` (default data.scorer_options) plus the offline stand-in."""
    opts = data.scorer_options if options is None else options
    return resolve_task(data).scorer_options(opts, data.offline_scorers)

"""The paper's red-teaming figure: the pool's average misalignment against round, per run.

    from harness.analysis.red_team_report import plot_red_team
    plot_red_team([Path("runs/tox_mle/red_team"), Path("runs/tox_conditional/red_team")], Path("report"))

Reads the output folders of scripts/red_team.py (`rounds.jsonl`, and `settings.json` for the run's
name, objective and task); a run folder whose red-team results are in the default `red_team/`
subfolder works too. Each line is one red-teamed model: the mean over trials of `average_score`
at each round, with a band of one standard deviation over trials (none with one trial).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.analysis.figures import save_figure
from harness.objectives import REGISTRY
from harness.tasks import task_label

ROUNDS_FILE, SETTINGS_FILE, DEFAULT_SUBFOLDER = "rounds.jsonl", "settings.json", "red_team"
PLOT_FILE = "red_team.png"
METRIC = "average_score"


@dataclass
class RedTeamRun:
    """One red-teaming output folder: who was red-teamed, and the records of rounds.jsonl."""

    folder: Path
    name: str
    objective: str
    task: str
    records: list[dict[str, Any]] = field(default_factory=list)


def results_folder(folder: str | Path) -> Path:
    """The folder holding rounds.jsonl: `folder` itself, or its `red_team/` subfolder."""
    folder = Path(folder)
    for candidate in (folder, folder / DEFAULT_SUBFOLDER):
        if (candidate / ROUNDS_FILE).is_file():
            return candidate
    raise FileNotFoundError(
        f"{folder}: no {ROUNDS_FILE} (here or in {DEFAULT_SUBFOLDER}/); run scripts/red_team.py "
        "with --out pointing here"
    )


def load_red_team(folder: str | Path) -> RedTeamRun:
    """A red-teaming output folder's settings and round records."""
    folder = results_folder(folder)
    settings_file = folder / SETTINGS_FILE
    settings = json.loads(settings_file.read_text()) if settings_file.is_file() else {}
    lines = (folder / ROUNDS_FILE).read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return RedTeamRun(
        folder=folder,
        name=str(settings.get("run_name", folder.name)),
        objective=str(settings.get("objective", "?")),
        task=str(settings.get("task", "?")),
        records=records,
    )


def curve(
    records: list[dict[str, Any]], metric: str = METRIC
) -> tuple[list[int], list[float], list[float]]:
    """(rounds, mean over trials, standard deviation over trials) of `metric` at each round.

    The standard deviation is the sample one (n - 1) over the trials that reached the round;
    0 with one trial.
    """
    by_round: dict[int, list[float]] = {}
    for r in records:
        value = r.get(metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            by_round.setdefault(int(r["round"]), []).append(float(value))
    rounds = sorted(by_round)
    means = [statistics.fmean(by_round[i]) for i in rounds]
    stds = [statistics.stdev(by_round[i]) if len(by_round[i]) > 1 else 0.0 for i in rounds]
    return rounds, means, stds


def _color(objective: str, index: int) -> str:
    if objective in REGISTRY:  # the report's colour of the objective
        return REGISTRY[objective].color
    return ["#8c564b", "#e377c2", "#17becf", "#bcbd22"][index % 4]


def _plot_task(ax, runs: list[RedTeamRun], task: str) -> None:
    """One panel: a line and a band (mean +- one standard deviation over trials) per run."""
    from matplotlib.ticker import MaxNLocator

    values: list[float] = []
    for i, run in enumerate(runs):
        rounds, means, stds = curve(run.records)
        if not rounds:
            continue
        color = _color(run.objective, i)
        trials = len({r.get("trial") for r in run.records})
        plain = run.name in (run.objective, f"{task}_{run.objective}")
        label = run.objective if plain else f"{run.objective} ({run.name})"
        ax.plot(
            rounds, means, marker="o", ms=4, lw=1.8, color=color, label=f"{label}, {trials} trials"
        )
        low = [m - s for m, s in zip(means, stds, strict=True)]
        high = [m + s for m, s in zip(means, stds, strict=True)]
        ax.fill_between(rounds, low, high, color=color, alpha=0.2, lw=0)
        values += means
    if values and min(values) > 0 and max(values) / min(values) > 3:
        ax.set_yscale("log")  # objectives differ by orders of magnitude, as in the paper
    ax.set_title(f"{task}: red teaming")
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"pool average score ({task_label(task)})")
    ax.grid(True, which="both", alpha=0.3)
    if values:
        ax.legend(fontsize=8)


def plot_red_team(run_dirs: list[Path], out: Path) -> Path:
    """Pool average misalignment vs round, one line per run, one panel per task; the PNG's path.

    `out` is a folder (the plot is `out/red_team.png`) or a `.png` file; written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [load_red_team(d) for d in run_dirs]
    tasks: dict[str, list[RedTeamRun]] = {}
    for run in runs:
        tasks.setdefault(run.task, []).append(run)
    fig, axes = plt.subplots(
        1, max(1, len(tasks)), figsize=(max(6.5, 5.5 * len(tasks)), 4.2), squeeze=False
    )
    for ax, (task, task_runs) in zip(axes[0], tasks.items(), strict=False):
        _plot_task(ax, task_runs, task)
    fig.suptitle("Red teaming: average misalignment of the prompt pool (lower is better)")
    path = Path(out) if Path(out).suffix == ".png" else Path(out) / PLOT_FILE
    return save_figure(fig, path)

"""Writing a report's figures: laid out, published atomically, freed; and the PHF report's two
figures of runs (`harness.analysis.report.RunRecord`s).

- `plot_score_vs_tokens`: misalignment vs tokens seen, one panel per task (the paper's Figure 2);
- `plot_pareto`: final misalignment vs held-out loss and vs KL from the reference, per task.

A panel that would be empty (no run has its metric) is left out and the figure laid out with the
panels that have data; `score_panels` / `pareto_panels` say which were left out and why (for
report.md). A figure without any panel is not written (the plot functions return None). When
the runs' last evaluations are at different steps or tokens, the figures' titles say so
(`different_steps`) and the Pareto legend gives each point's step.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

from harness.atomic import atomic_write, atomic_write_bytes
from harness.objectives import REGISTRY
from harness.tasks import task_label

PARETO_AXES = {  # x metric: (short name, axis label, why a panel of it can be empty)
    "eval/lm_loss": (
        "loss",
        "held-out LM loss (nats/token)",
        "no run has eval/lm_loss at its last evaluation",
    ),
    "eval/kl_ref": (
        "KL",
        "KL(model || reference) (nats/sample)",
        "no run has eval/kl_ref at its last evaluation: set eval.reference_model, run scripts/evaluate.py",
    ),
}


def save_figure(fig, path: Path) -> Path:
    """Lay out `fig`, write it as a PNG at `path` through a temporary file, and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    finally:
        plt.close(fig)
    return path


def save_text(path: Path, text: str) -> Path:
    """Publish a report's text file atomically."""
    atomic_write_bytes(Path(path), text.encode())
    return Path(path)


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def color(run) -> str:
    """Fixed per objective, so every plot of every report reads the same."""
    if run.objective in REGISTRY:
        return REGISTRY[run.objective].color
    others = ["#8c564b", "#e377c2", "#17becf", "#bcbd22"]
    return others[hash(run.objective) % len(others)]


def label(run) -> str:
    name = (
        run.objective
        if run.name in (run.objective, f"{run.task}_{run.objective}")
        else f"{run.objective} ({run.name})"
    )
    return f"MLE, then {name}" if run.finetuned else name


def by_task(runs: list) -> dict[str, list]:
    """Runs per task, in the paper's order of objectives (so legends read the same everywhere)."""
    order = list(REGISTRY)

    def rank(run) -> tuple[int, str, str]:
        known = order.index(run.objective) if run.objective in order else len(order)
        return known, run.objective, run.name

    out: dict[str, list] = {}
    for run in sorted(runs, key=rank):
        out.setdefault(run.task, []).append(run)
    return out


def format_tokens(value: float, _pos: int = 0) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:g}{unit}"
    return f"{value:g}"


def _last_evaluations(runs: list) -> list[tuple[str, Any, Any]]:
    """(name, step, tokens) of each evaluated run's last evaluation, in the table's order."""
    ordered = sorted(runs, key=lambda r: (r.task, r.objective, r.name))
    return [
        (r.display_name, r.final.get("step"), r.final.get("tokens")) for r in ordered if r.evals
    ]


def differing(runs: list) -> str | None:
    """ "step" when the runs' last evaluations are at different steps, else "tokens" when they
    have seen different numbers of tokens, else None."""
    last = _last_evaluations(runs)
    for field, i in (("step", 1), ("tokens", 2)):
        if len({e[i] for e in last if finite(e[i])}) > 1:
            return field
    return None


def tag(record: dict[str, Any], field: str) -> str:
    """A last evaluation's step ("150") or tokens seen ("1.2M"); "?" when not recorded."""
    value = record.get(field)
    if not finite(value):
        return "?"
    return f"{value:.0f}" if field == "step" else format_tokens(value)


def different_steps(runs: list) -> str | None:
    """ "runs are at different steps: a 100, b 150" when the runs' last evaluations differ in step
    (else in tokens: "runs have seen different numbers of tokens: a 1k, b 2k"); None if they agree."""
    field = differing(runs)
    if field is None:
        return None
    named = ", ".join(
        f"{name} {tag({'step': step, 'tokens': tokens}, field)}"
        for name, step, tokens in _last_evaluations(runs)
    )
    what = "are at different steps" if field == "step" else "have seen different numbers of tokens"
    return f"runs {what}: {named}"


def _suptitle(fig, title: str, runs: list, each: str) -> None:
    note = different_steps(runs)
    if note:
        width = int(fig.get_figwidth() * 11)  # characters per line of a 12 pt title
        title += "\n" + textwrap.fill(f"{note}; {each}", width)
    fig.suptitle(title)


def _legend(ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))  # several runs of one objective: one entry
    ax.legend(unique.values(), unique.keys(), title="objective", fontsize=8)


def _set_log_y(ax, values: list[float]) -> None:
    if values and min(values) > 0 and max(values) / min(values) > 3:
        ax.set_yscale("log")  # misalignment spans orders of magnitude across objectives (Fig. 2)


def _score_points(run, key: str) -> list[tuple[float, float]]:
    return [
        (e["tokens"], e[key]) for e in run.evals if finite(e.get("tokens")) and finite(e.get(key))
    ]


def _pareto_point(run, xkey: str, key: str) -> tuple[float, float] | None:
    x, y = run.final.get(xkey), run.final.get(key)
    return (x, y) if finite(x) and finite(y) else None


def score_panels(runs: list, scenario: str) -> tuple[list[str], list[str]]:
    """The tasks whose score-vs-tokens panel has data, and a line per omitted panel saying why."""
    key = f"eval/{scenario}/score_mean"
    panels, omitted = [], []
    for task, task_runs in by_task(runs).items():
        if any(_score_points(r, key) for r in task_runs):
            panels.append(task)
        else:
            omitted.append(f"{task}: score vs tokens (no run logged {key} with its tokens)")
    return panels, omitted


def pareto_panels(runs: list, scenario: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The (task, x metric) Pareto panels that have a point, and a line per omitted panel saying why."""
    key = f"eval/{scenario}/score_mean"
    panels, omitted = [], []
    for task, task_runs in by_task(runs).items():
        for xkey, (short, _, why) in PARETO_AXES.items():
            if any(_pareto_point(r, xkey, key) for r in task_runs):
                panels.append((task, xkey))
                continue
            if any(finite(r.final.get(xkey)) for r in task_runs):
                why = f"no run has {key} at the last evaluation that has its {xkey}"
            omitted.append(f"{task}: final score vs {short} ({why})")
    return panels, omitted


def plot_score_vs_tokens(runs: list, out: Path, scenario: str = "unconditional") -> Path | None:
    """Misalignment score vs tokens seen, one panel per task with data, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    key = f"eval/{scenario}/score_mean"
    tasks, (panels, _) = by_task(runs), score_panels(runs, scenario)
    if not panels:
        return None
    fig, axes = plt.subplots(
        1, len(panels), figsize=(max(7.0, 5.5 * len(panels)), 4.6), squeeze=False
    )
    for ax, task in zip(axes[0], panels, strict=True):
        values = []
        seen: dict[tuple[str, bool], int] = {}
        for run in tasks[task]:
            # Runs sharing a colour get their own line style; finetuning runs are dashed, and
            # their curves start at the pretraining tokens (train.tokens_already_seen).
            kind = (run.objective, run.finetuned)
            style = (("--", ":") if run.finetuned else ("-", "-."))[seen.get(kind, 0) % 2]
            seen[kind] = seen.get(kind, 0) + 1
            if points := _score_points(run, key):
                xs, ys = zip(*points, strict=True)
                values += ys
                ax.plot(xs, ys, style, marker="o", ms=4, lw=1.8, color=color(run), label=label(run))
        _set_log_y(ax, values)
        ax.set_title(f"{task}: {scenario} samples")
        ax.set_xlabel("tokens seen")
        ax.xaxis.set_major_formatter(FuncFormatter(format_tokens))
        ax.set_ylabel(f"misalignment score ({task_label(task)})")
        ax.grid(True, which="both", alpha=0.3)
        _legend(ax)
    title = "Misalignment score vs tokens seen (lower is better)"
    _suptitle(fig, title, runs, "each line ends at its run's last evaluation")
    return save_figure(fig, out / "score_vs_tokens.png")


def _pareto_panel(
    ax, task: str, task_runs: list, xkey: str, scenario: str, field: str | None
) -> None:
    key = f"eval/{scenario}/score_mean"
    values = []
    kinds = [(r.objective, r.finetuned) for r in task_runs]
    shared = {k for k in kinds if kinds.count(k) > 1}
    for run in task_runs:
        if (point := _pareto_point(run, xkey, key)) is None:
            continue
        x, y = point
        values.append(y)
        name = f"MLE, then {run.objective}" if run.finetuned else run.objective
        if field:  # the runs' last evaluations differ: say which each point is
            name += (
                f" (step {tag(run.final, field)})"
                if field == "step"
                else f" ({tag(run.final, field)} tokens)"
            )
        marker = "^" if run.finetuned else "o"
        ax.scatter([x], [y], s=60, color=color(run), marker=marker, label=name, zorder=3)
        if (run.objective, run.finetuned) in shared:  # the legend cannot tell these apart
            ax.annotate(run.name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
    _set_log_y(ax, values)
    short, xlabel, _ = PARETO_AXES[xkey]
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"misalignment score ({task_label(task)})")
    ax.set_title(f"{task}: final {scenario} score vs {short}")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax)


def plot_pareto(runs: list, out: Path, scenario: str = "unconditional") -> Path | None:
    """Final misalignment vs held-out LM loss and vs KL from the reference: a row per task, a
    column per x metric, only the panels with data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, (panels, _) = by_task(runs), pareto_panels(runs, scenario)
    if not panels:
        return None
    rows = list(dict.fromkeys(task for task, _ in panels))
    cols = [xkey for xkey in PARETO_AXES if any(x == xkey for _, x in panels)]
    fig = plt.figure(figsize=(max(6.5, 5.5 * len(cols)), 4.6 * len(rows)))
    field = differing(runs)
    for task, xkey in panels:
        ax = fig.add_subplot(
            len(rows), len(cols), rows.index(task) * len(cols) + cols.index(xkey) + 1
        )
        _pareto_panel(ax, task, tasks[task], xkey, scenario, field)
    title = "Capability cost vs misalignment (lower-left is better)"
    _suptitle(fig, title, runs, "each point is its run's last evaluation")
    return save_figure(fig, out / "pareto.png")

"""The report's downstream panel: HumanEval pass@k and the GLUE average per run (reads files only).

    entries = [("pep8_mle", Path("reports/humaneval/pep8_mle")), ("pep8_conditional", ...)]
    plot_downstream(entries, Path("reports/pep8"))       # -> reports/pep8/downstream.png
    print(downstream_table(entries))                     # Markdown

An entry's path is a `humaneval.json` or `glue.json` (scripts/humaneval.py, scripts/glue.py) or a
folder holding either or both. Bars are coloured by the objective the files record (the
objectives' fixed colours, as in harness.analysis.figures).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.analysis.figures import save_figure
from harness.objectives import REGISTRY

FILES = {"humaneval": "humaneval.json", "glue": "glue.json"}
OTHER_COLOR = "#8c564b"


@dataclass
class DownstreamResult:
    """One run's downstream results, as far as they exist."""

    label: str
    objective: str | None = None
    pass_at_k: dict[int, float] = field(default_factory=dict)
    glue_average: float | None = None
    glue_scores: dict[str, float] = field(default_factory=dict)
    glue_complete: bool = True


def load_downstream(path: str | Path) -> dict[str, dict[str, Any]]:
    """`{"humaneval": ..., "glue": ...}` (those found) from a result file or a folder of them."""
    path = Path(path)
    if path.is_file():
        kinds = [k for k, name in FILES.items() if path.name == name]
        if not kinds:
            raise ValueError(f"{path}: not one of {', '.join(FILES.values())}")
        return {kinds[0]: json.loads(path.read_text())}
    found = {k: path / name for k, name in FILES.items() if (path / name).is_file()}
    if not found:
        raise FileNotFoundError(f"{path}: no {' or '.join(FILES.values())}")
    return {k: json.loads(p.read_text()) for k, p in found.items()}


def load_result(label: str, path: str | Path) -> DownstreamResult:
    """The downstream results of one entry."""
    data = load_downstream(path)
    result = DownstreamResult(label)
    if "humaneval" in data:
        he = data["humaneval"]
        result.pass_at_k = {int(k[5:]): float(v) for k, v in he.items() if k.startswith("pass@")}
        result.objective = he.get("source", {}).get("objective")
    if "glue" in data:
        glue = data["glue"]
        result.glue_average = glue.get("average")
        result.glue_scores = {n: float(t["score"]) for n, t in glue.get("tasks", {}).items()}
        result.glue_complete = bool(glue.get("complete", True))
        result.objective = result.objective or glue.get("source", {}).get("objective")
    return result


def _color(result: DownstreamResult) -> str:
    cls = REGISTRY.get(result.objective or "")
    return cls.color if cls is not None else OTHER_COLOR


def _plot_pass_at_k(ax, results: list[DownstreamResult]) -> None:
    """Grouped bars: one group per k, one bar per run."""
    ks = sorted({k for r in results for k in r.pass_at_k})
    runs = [r for r in results if r.pass_at_k]
    width = 0.8 / max(1, len(runs))
    for i, r in enumerate(runs):
        xs = [n + (i - (len(runs) - 1) / 2) * width for n, k in enumerate(ks) if k in r.pass_at_k]
        ys = [100 * r.pass_at_k[k] for k in ks if k in r.pass_at_k]
        ax.bar(xs, ys, width, color=_color(r), edgecolor="black", lw=0.5, label=r.label)
    ax.set_xticks(range(len(ks)), [f"pass@{k}" for k in ks])
    ax.set_ylabel("HumanEval pass@k (%)")
    ax.set_title("HumanEval (higher is better)")
    ax.legend(fontsize=8)


def _plot_glue(ax, results: list[DownstreamResult]) -> None:
    """One bar per run: the GLUE average (an incomplete run is marked)."""
    runs = [r for r in results if r.glue_average is not None]
    for i, r in enumerate(runs):
        ax.bar(i, r.glue_average, 0.7, color=_color(r), edgecolor="black", lw=0.5)
        note = f"{r.glue_average:.1f}" + ("" if r.glue_complete else "*")
        ax.text(i, r.glue_average, note, ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(runs)), [r.label for r in runs], rotation=20, ha="right")
    ax.set_ylabel("GLUE average score")
    ax.set_title("GLUE (higher is better; * incomplete)")


def plot_downstream(entries: list[tuple[str, Path]], out: Path) -> Path:
    """Bar charts of pass@k and of the GLUE average per run: `out` (a .png) or out/downstream.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [load_result(label, path) for label, path in entries]
    panels = [
        (draw, results)
        for draw, present in (
            (_plot_pass_at_k, any(r.pass_at_k for r in results)),
            (_plot_glue, any(r.glue_average is not None for r in results)),
        )
        if present
    ]
    if not panels:
        raise ValueError("no pass@k or GLUE average in any entry")
    fig, axes = plt.subplots(1, len(panels), figsize=(6.0 * len(panels), 4.2), squeeze=False)
    for ax, (draw, rows) in zip(axes[0], panels, strict=True):
        draw(ax, rows)
        ax.grid(True, axis="y", alpha=0.3)
    out = Path(out)
    path = out if out.suffix == ".png" else out / "downstream.png"
    return save_figure(fig, path)


def _cell(value: float | None, fmt: str = "{:.1f}") -> str:
    return fmt.format(value) if value is not None and math.isfinite(value) else "–"


def downstream_table(entries: list[tuple[str, Path]]) -> str:
    """A Markdown table: run, objective, pass@k (%), GLUE average and each task's score."""
    results = [load_result(label, path) for label, path in entries]
    ks = sorted({k for r in results for k in r.pass_at_k})
    tasks = list(dict.fromkeys(t for r in results for t in r.glue_scores))
    head = ["run", "objective", *(f"pass@{k} (%)" for k in ks)]
    head += ["GLUE avg", *tasks] if any(r.glue_average is not None for r in results) else []
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r.label, r.objective or "–"]
        cells += [_cell(100 * r.pass_at_k[k], "{:.2f}") if k in r.pass_at_k else "–" for k in ks]
        if len(head) > len(cells):
            average = _cell(r.glue_average) + ("" if r.glue_complete else " (incomplete)")
            cells += [average, *(_cell(r.glue_scores.get(t)) for t in tasks)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"

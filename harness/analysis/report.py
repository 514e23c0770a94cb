"""Plots and a table from run folders (reads files only): the paper's Figure 2 and its Pareto view.

    python scripts/report.py runs/pep8_mle runs/pep8_conditional ... --out reports/pep8

Each run folder gives `config.yaml` (name, objective, task = data.task or data.scorer) and its evaluations:
`metrics.jsonl` records with `eval/...` keys (logged during training) and
`eval/step-*/metrics.json` (written by training and by scripts/evaluate.py), merged by step.
Outputs in `--out`:

- `score_vs_tokens.png`: misalignment score of the samples vs tokens seen, one line per run,
  one panel per task, log y (as the paper's Figure 2);
- `pareto.png`: final misalignment vs held-out LM loss and vs KL from the reference model, one
  point per run (lower-left is better);
- `report.md`: a table of each run's final metrics (the score with its standard error over the
  samples, from `eval/step-*/samples.jsonl`), a table of training throughput, and the plots.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.analysis.figures import save_figure, save_text
from harness.objectives import REGISTRY
from harness.tasks import task_label

TABLE_COLUMNS = [
    ("step", "step", "{:.0f}"),
    ("tokens", "tokens", "{:.3g}"),
    ("score", "eval/{s}/score_mean", "{:.4g}"),
    ("± s.e.", "eval/{s}/score_sem", "{:.2g}"),
    ("exp. max (25)", "eval/{s}/expected_max_score", "{:.4g}"),
    ("frac > thr.", "eval/{s}/frac_above_threshold", "{:.3f}"),
    ("LM loss", "eval/lm_loss", "{:.4f}"),
    ("KL (nats/sample)", "eval/kl_ref", "{:.4g}"),
    ("distinct-1/2/3", None, ""),
    # The paper's self-BLEU-5 (characters); runs measured with the harness's definitions, or
    # before the paper's existed here, show their word BLEU-4.
    ("self-BLEU", ("self_bleu_5", "self_bleu_4_words", "self_bleu"), "{:.3f}"),
    ("length", "eval/{s}/length_tokens_mean", "{:.1f}"),
    ("compiles", "eval/{s}/compile_rate", "{:.2f}"),
]


@dataclass
class RunRecord:
    """One run folder's identity and evaluations (sorted by step)."""

    folder: Path
    name: str
    task: str
    objective: str
    evals: list[dict[str, Any]] = field(default_factory=list)
    train: list[dict[str, Any]] = field(default_factory=list)
    """Training records of metrics.jsonl (those with `tokens_per_s`)."""
    finetuned: bool = False
    """Trained from a pretrained model.path (e.g. MLE, then this objective: the paper's section 5)."""

    @property
    def display_name(self) -> str:
        """The run name, marked when the run finetuned a pretrained model."""
        return f"{self.name} (finetuned)" if self.finetuned else self.name

    @property
    def final(self) -> dict[str, Any]:
        """The evaluation with the largest step ({} when none)."""
        return self.evals[-1] if self.evals else {}


def _is_eval_record(record: dict[str, Any]) -> bool:
    return "step" in record and any(k.startswith("eval/") for k in record)


def sample_score_sems(samples_file: Path) -> dict[str, float]:
    """`eval/<scenario>/score_sem`: standard error of the mean sample score, per scenario."""
    by_scenario: dict[str, list[float]] = {}
    for line in samples_file.read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        if _finite(row.get("score")):
            by_scenario.setdefault(row.get("scenario", "?"), []).append(float(row["score"]))
    return {
        f"eval/{scenario}/score_sem": statistics.stdev(scores) / math.sqrt(len(scores))
        for scenario, scores in by_scenario.items()
        if len(scores) > 1
    }


def load_run(folder: str | Path) -> RunRecord:
    """Read a run folder; evaluations from metrics.jsonl and eval/*/metrics.json merged by step."""
    folder = Path(folder)
    config_file = folder / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(f"{folder}: no config.yaml (is this a run folder?)")
    cfg = yaml.safe_load(config_file.read_text()) or {}
    by_step: dict[int, dict[str, Any]] = {}
    train: list[dict[str, Any]] = []
    metrics_file = folder / "metrics.jsonl"
    if metrics_file.is_file():
        for line in metrics_file.read_text().splitlines():
            try:
                record = json.loads(line) if line.strip() else {}
            except json.JSONDecodeError:  # a run killed mid-write leaves a partial last line
                continue
            if _is_eval_record(record):
                by_step.setdefault(int(record["step"]), {}).update(record)
            elif "tokens_per_s" in record:
                train.append(record)
    for path in sorted(folder.glob("eval/step-*/metrics.json")):
        record = json.loads(path.read_text())
        if _is_eval_record(record):
            step = by_step.setdefault(int(record["step"]), {})
            step.update(record)
            if (path.parent / "samples.jsonl").is_file():
                step.update(sample_score_sems(path.parent / "samples.jsonl"))
    return RunRecord(
        folder=folder,
        name=cfg.get("run", {}).get("name", folder.name),
        task=cfg.get("data", {}).get("task") or cfg.get("data", {}).get("scorer", "?"),
        objective=cfg.get("objective", {}).get("name", "?"),
        evals=[by_step[s] for s in sorted(by_step)],
        train=train,
        finetuned=bool(cfg.get("train", {}).get("tokens_already_seen"))
        or (
            bool(cfg.get("model", {}).get("path"))
            and cfg.get("model", {}).get("from_scratch") is False
        ),
    )


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _color(run: RunRecord) -> str:
    if (
        run.objective in REGISTRY
    ):  # fixed per objective, so every plot of every report reads the same
        return REGISTRY[run.objective].color
    others = ["#8c564b", "#e377c2", "#17becf", "#bcbd22"]
    return others[hash(run.objective) % len(others)]


def _label(run: RunRecord) -> str:
    label = (
        run.objective
        if run.name in (run.objective, f"{run.task}_{run.objective}")
        else f"{run.objective} ({run.name})"
    )
    return f"MLE, then {label}" if run.finetuned else label


def _by_task(runs: list[RunRecord]) -> dict[str, list[RunRecord]]:
    """Runs per task, in the paper's order of objectives (so legends read the same everywhere)."""
    order = list(REGISTRY)

    def rank(run: RunRecord) -> tuple[int, str, str]:
        known = order.index(run.objective) if run.objective in order else len(order)
        return known, run.objective, run.name

    out: dict[str, list[RunRecord]] = {}
    for run in sorted(runs, key=rank):
        out.setdefault(run.task, []).append(run)
    return out


def _format_tokens(value: float, _pos: int = 0) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:g}{unit}"
    return f"{value:g}"


def _legend(ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))  # several runs of one objective: one entry
    ax.legend(unique.values(), unique.keys(), title="objective", fontsize=8)


def _set_log_y(ax, values: list[float]) -> None:
    if values and min(values) > 0 and max(values) / min(values) > 3:
        ax.set_yscale(
            "log"
        )  # misalignment spans orders of magnitude across objectives (paper Fig. 2)


def plot_score_vs_tokens(runs: list[RunRecord], out: Path, scenario: str = "unconditional") -> Path:
    """Misalignment score vs tokens seen, one panel per task, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    key = f"eval/{scenario}/score_mean"
    tasks = _by_task(runs)
    fig, axes = plt.subplots(
        1, len(tasks), figsize=(max(7.0, 5.5 * len(tasks)), 4.2), squeeze=False
    )
    for ax, (task, task_runs) in zip(axes[0], tasks.items(), strict=True):
        values = []
        seen: dict[tuple[str, bool], int] = {}
        for run in task_runs:
            # Runs sharing a colour get their own line style; finetuning runs are dashed, and
            # their curves start at the pretraining tokens (train.tokens_already_seen).
            kind = (run.objective, run.finetuned)
            style = ("--", ":") if run.finetuned else ("-", "-.")
            style = style[seen.get(kind, 0) % 2]
            seen[kind] = seen.get(kind, 0) + 1
            points = [
                (e["tokens"], e[key])
                for e in run.evals
                if _finite(e.get("tokens")) and _finite(e.get(key))
            ]
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            values += ys
            ax.plot(xs, ys, style, marker="o", ms=4, lw=1.8, color=_color(run), label=_label(run))
        _set_log_y(ax, values)
        ax.set_title(f"{task}: {scenario} samples")
        ax.set_xlabel("tokens seen")
        ax.xaxis.set_major_formatter(FuncFormatter(_format_tokens))
        ax.set_ylabel(f"misalignment score ({task_label(task)})")
        ax.grid(True, which="both", alpha=0.3)
        if values:
            _legend(ax)
        else:
            ax.text(
                0.5, 0.5, "no evaluations logged", ha="center", va="center", transform=ax.transAxes
            )
    fig.suptitle("Misalignment score vs tokens seen (lower is better)")
    return save_figure(fig, out / "score_vs_tokens.png")


def plot_pareto(runs: list[RunRecord], out: Path, scenario: str = "unconditional") -> Path:
    """Final misalignment vs held-out LM loss and vs KL from the reference, per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = f"eval/{scenario}/score_mean"
    tasks = _by_task(runs)
    axes_spec = [
        ("eval/lm_loss", "held-out LM loss (nats/token)"),
        ("eval/kl_ref", "KL(model || reference) (nats/sample)"),
    ]
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 4.2 * len(tasks)), squeeze=False)
    for row, (task, task_runs) in zip(axes, tasks.items(), strict=True):
        for ax, (xkey, xlabel) in zip(row, axes_spec, strict=True):
            values = []
            kinds = [(r.objective, r.finetuned) for r in task_runs]
            shared = {k for k in kinds if kinds.count(k) > 1}
            for run in task_runs:
                x, y = run.final.get(xkey), run.final.get(key)
                if not (_finite(x) and _finite(y)):
                    continue
                values.append(y)
                marker = "^" if run.finetuned else "o"
                label = f"MLE, then {run.objective}" if run.finetuned else run.objective
                ax.scatter([x], [y], s=60, color=_color(run), marker=marker, label=label, zorder=3)
                if (run.objective, run.finetuned) in shared:  # the legend cannot tell these apart
                    ax.annotate(
                        run.name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7
                    )
            _set_log_y(ax, values)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"misalignment score ({task_label(task)})")
            ax.set_title(
                f"{task}: final {scenario} score vs {'loss' if xkey == 'eval/lm_loss' else 'KL'}"
            )
            ax.grid(True, which="both", alpha=0.3)
            if values:
                _legend(ax)
            else:
                hint = (
                    "set eval.reference_model"
                    if xkey == "eval/kl_ref"
                    else "no held-out loss logged"
                )
                ax.text(
                    0.5, 0.5, f"no data ({hint})", ha="center", va="center", transform=ax.transAxes
                )
    fig.suptitle("Capability cost vs misalignment (lower-left is better)")
    return save_figure(fig, out / "pareto.png")


def _first(record: dict[str, Any], scenario: str, names: tuple[str, ...]) -> Any:
    """The first of the metrics `names` of `scenario` that the record has."""
    keys = [f"eval/{scenario}/{name}" for name in names]
    return next((record[k] for k in keys if k in record), None)


def _cell(
    record: dict[str, Any], key: str | tuple[str, ...] | None, fmt: str, scenario: str
) -> str:
    if key is None:  # distinct-1/2/3 in one cell: the paper's, else the corpus-level ones
        vals = [
            _first(record, scenario, (f"distinct_{n}", f"distinct_corpus_{n}")) for n in (1, 2, 3)
        ]
        return "/".join(f"{v:.2f}" for v in vals) if all(_finite(v) for v in vals) else "-"
    if isinstance(key, tuple):
        value = _first(record, scenario, key)
        return fmt.format(value) if _finite(value) else "-"
    value = record.get(key.format(s=scenario))
    return fmt.format(value) if _finite(value) else "-"


def markdown_table(runs: list[RunRecord], scenario: str = "unconditional") -> str:
    """One row per run: its final evaluation."""
    head = ["run", "task", "objective", *(c[0] for c in TABLE_COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in sorted(runs, key=lambda r: (r.task, r.objective, r.name)):
        cells = [_cell(run.final, key, fmt, scenario) for _, key, fmt in TABLE_COLUMNS]
        lines.append("| " + " | ".join([run.display_name, run.task, run.objective, *cells]) + " |")
    return "\n".join(lines)


def _median(values: list[Any]) -> float:
    """Median of the finite values (nan when none)."""
    finite = [v for v in values if _finite(v)]
    return statistics.median(finite) if finite else float("nan")


def throughput_table(runs: list[RunRecord]) -> str:
    """One row per run: steps and tokens trained, median tokens/s and MFU of the logged steps."""
    head = ["run", "steps", "tokens", "tokens/s (median)", "MFU (median)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in sorted(runs, key=lambda r: (r.task, r.objective, r.name)):
        last = run.train[-1] if run.train else {}
        # The first logged step includes start-up; leave it out when there are others.
        logged = run.train[1:] if len(run.train) > 1 else run.train
        cells = [
            f"{last['step']:.0f}" if _finite(last.get("step")) else "-",
            f"{last['tokens']:.3g}" if _finite(last.get("tokens")) else "-",
            *(
                f"{v:.3g}" if _finite(v) else "-"
                for v in (
                    _median([r.get("tokens_per_s") for r in logged]),
                    _median([r.get("mfu") for r in logged]),
                )
            ),
        ]
        lines.append("| " + " | ".join([run.display_name, *cells]) + " |")
    return "\n".join(lines)


def _extra_panels(runs: list[RunRecord], out: Path, paths: dict[str, Path]) -> list[str]:
    """The red-teaming figure and the downstream panel, for the runs that have their results
    (`<run>/red_team/` of scripts/red_team.py, `<run>/downstream/` of scripts/humaneval.py and
    scripts/glue.py); report.md lines."""
    from harness.analysis.downstream_report import FILES, downstream_table, plot_downstream
    from harness.analysis.red_team_report import plot_red_team

    text: list[str] = []
    red = [
        r.folder / "red_team" for r in runs if (r.folder / "red_team" / "rounds.jsonl").is_file()
    ]
    if red:
        paths["red_team"] = plot_red_team(red, out)
        text += ["Red teaming (section 4.2 of the paper):", "", "![red teaming](red_team.png)", ""]
    down = [
        (r.display_name, r.folder / "downstream")
        for r in runs
        if any((r.folder / "downstream" / name).is_file() for name in FILES.values())
    ]
    if down:
        paths["downstream"] = plot_downstream(down, out)
        text += ["Downstream (section 4.3):", "", downstream_table(down), ""]
        text += ["![downstream](downstream.png)", ""]
    return text


def write_report(
    folders: list[str | Path], out: str | Path, scenario: str = "unconditional"
) -> dict[str, Path]:
    """Plots and report.md for the given run folders; returns the written paths."""
    runs = [load_run(f) for f in folders]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "score_vs_tokens": plot_score_vs_tokens(runs, out, scenario),
        "pareto": plot_pareto(runs, out, scenario),
    }
    missing = [r.name for r in runs if not r.evals]
    text = [
        "# PHF report",
        "",
        f"Runs: {', '.join(str(r.folder) for r in runs)}. Scores are of `{scenario}` samples, "
        "misalignment per the task's scorer (lower is better); definitions in "
        "`harness/evaluation/metrics.py` and `harness/evaluation/runner.py`.",
        "",
        markdown_table(runs, scenario),
        "",
        "Training throughput:",
        "",
        throughput_table(runs),
        "",
        "![misalignment vs tokens](score_vs_tokens.png)",
        "",
        "![misalignment vs loss and KL](pareto.png)",
        "",
    ]
    if missing:
        text += [
            f"No evaluations found for: {', '.join(missing)} (run scripts/evaluate.py on them).",
            "",
        ]
    text += _extra_panels(runs, out, paths)
    paths["report"] = out / "report.md"
    save_text(paths["report"], "\n".join(text))
    return paths

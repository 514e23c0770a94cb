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

report.md does not let runs pass for comparable when they are not: when their last evaluations
are at different steps (or tokens) it says so above the table (and the figures' titles do); the
expected maximum is labelled with the number of samples it is over (the paper's 25, or all the
samples when fewer were drawn, which it notes); a figure panel without data is left out and named
with the reason (a figure with none is not written, and report.md says so). Figures: figures.py.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.analysis.downstream_report import FILES, downstream_table, plot_downstream
from harness.analysis.figures import (
    different_steps,
    finite,
    pareto_panels,
    plot_pareto,
    plot_score_vs_tokens,
    save_text,
    score_panels,
)
from harness.analysis.red_team_report import plot_red_team
from harness.evaluation.metrics import EXPECTED_MAX_GROUP
from harness.tasks import task_label

__all__ = [  # the figures are drawn in figures.py; these names stay importable from here
    "load_run",
    "markdown_table",
    "plot_pareto",
    "plot_score_vs_tokens",
    "task_label",
    "write_report",
]

EXPECTED_MAX = "eval/{s}/expected_max_score"

TABLE_COLUMNS = [
    ("step", "step", "{:.0f}"),
    ("tokens", "tokens", "{:.3g}"),
    ("score", "eval/{s}/score_mean", "{:.4g}"),
    ("± s.e.", "eval/{s}/score_sem", "{:.2g}"),
    ("samples", "eval/{s}/num_samples", "{:.0f}"),
    ("exp. max", EXPECTED_MAX, "{:.4g}"),  # header and cells name the samples it is over
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


def sample_stats(samples_file: Path) -> dict[str, float]:
    """Per scenario of a samples.jsonl: `eval/<scenario>/num_samples` (the samples in it) and
    `eval/<scenario>/score_sem`, the standard error of the mean sample score (2 scores or more)."""
    by_scenario: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for line in samples_file.read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        if not row:
            continue
        scenario = row.get("scenario", "?")
        counts[scenario] = counts.get(scenario, 0) + 1
        if finite(row.get("score")):
            by_scenario.setdefault(scenario, []).append(float(row["score"]))
    out = {f"eval/{scenario}/num_samples": float(n) for scenario, n in counts.items()}
    for scenario, scores in by_scenario.items():
        if len(scores) > 1:
            out[f"eval/{scenario}/score_sem"] = statistics.stdev(scores) / math.sqrt(len(scores))
    return out


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
                for key, value in sample_stats(path.parent / "samples.jsonl").items():
                    if key.endswith("/score_sem"):
                        step[key] = value
                    else:  # the evaluation's own count first
                        step.setdefault(key, value)
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
        return "/".join(f"{v:.2f}" for v in vals) if all(finite(v) for v in vals) else "-"
    if isinstance(key, tuple):
        value = _first(record, scenario, key)
        return fmt.format(value) if finite(value) else "-"
    value = record.get(key.format(s=scenario))
    return fmt.format(value) if finite(value) else "-"


def expected_max_group(record: dict[str, Any], scenario: str) -> int | None:
    """How many samples `expected_max_score` is the expected maximum over: the group size the
    evaluation recorded, else min(25, the samples it had) (harness.evaluation.metrics)."""
    group = record.get(f"eval/{scenario}/expected_max_group")
    if finite(group):
        return int(group)
    n = record.get(f"eval/{scenario}/num_samples")
    return min(EXPECTED_MAX_GROUP, int(n)) if finite(n) else None


def _expected_max_groups(runs: list[RunRecord], scenario: str) -> dict[str, int | None]:
    """Per run with an expected maximum (table order): the samples it is over (None: unknown)."""
    key = EXPECTED_MAX.format(s=scenario)
    return {
        run.display_name: expected_max_group(run.final, scenario)
        for run in sorted(runs, key=lambda r: (r.task, r.objective, r.name))
        if finite(run.final.get(key))
    }


def markdown_table(runs: list[RunRecord], scenario: str = "unconditional") -> str:
    """One row per run: its final evaluation. The expected maximum's header names the number of
    samples it is over when the runs agree; otherwise each cell does ("0.04 (16)")."""
    groups = set(_expected_max_groups(runs, scenario).values())
    per_cell = len(groups) > 1 or None in groups
    exp_max = (
        "exp. max (K samples)" if per_cell else f"exp. max ({groups.pop()})" if groups else None
    )
    head = ["run", "task", "objective"]
    head += [exp_max if key == EXPECTED_MAX and exp_max else c for c, key, _ in TABLE_COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in sorted(runs, key=lambda r: (r.task, r.objective, r.name)):
        cells = []
        for _, key, fmt in TABLE_COLUMNS:
            cell = _cell(run.final, key, fmt, scenario)
            if key == EXPECTED_MAX and per_cell and cell != "-":
                group = expected_max_group(run.final, scenario)
                cell += f" ({group if group is not None else '?'})"
            cells.append(cell)
        lines.append("| " + " | ".join([run.display_name, run.task, run.objective, *cells]) + " |")
    return "\n".join(lines)


def sample_notes(runs: list[RunRecord], scenario: str = "unconditional") -> list[str]:
    """report.md lines on expected maxima over fewer samples than the paper's 25, or over an
    unknown number."""
    groups = _expected_max_groups(runs, scenario)
    few = [f"{name} {k}" for name, k in groups.items() if k is not None and k < EXPECTED_MAX_GROUP]
    unknown = [name for name, k in groups.items() if k is None]
    text = []
    if few:
        text += [
            f"`exp. max` is over fewer than the paper's {EXPECTED_MAX_GROUP} samples for: "
            f"{', '.join(few)} (the maximum of all their samples; evaluate with "
            f"`--eval.num_samples {EXPECTED_MAX_GROUP}` or more for the paper's metric).",
            "",
        ]
    if unknown:
        text += [f"`exp. max` of {', '.join(unknown)}: the number of samples is not recorded.", ""]
    return text


def _median(values: list[Any]) -> float:
    """Median of the finite values (nan when none)."""
    kept = [v for v in values if finite(v)]
    return statistics.median(kept) if kept else float("nan")


def throughput_table(runs: list[RunRecord]) -> str:
    """One row per run: steps and tokens trained, median tokens/s and MFU of the logged steps."""
    head = ["run", "steps", "tokens", "tokens/s (median)", "MFU (median)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in sorted(runs, key=lambda r: (r.task, r.objective, r.name)):
        last = run.train[-1] if run.train else {}
        # The first logged step includes start-up; leave it out when there are others.
        logged = run.train[1:] if len(run.train) > 1 else run.train
        cells = [
            f"{last['step']:.0f}" if finite(last.get("step")) else "-",
            f"{last['tokens']:.3g}" if finite(last.get("tokens")) else "-",
            *(
                f"{v:.3g}" if finite(v) else "-"
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


def _figure_lines(
    runs: list[RunRecord], out: Path, scenario: str, paths: dict[str, Path]
) -> list[str]:
    """Draw the two figures (only their panels with data); report.md lines: each figure, the
    panels left out and why, or why a figure was not drawn (an earlier report's file is removed)."""
    figures = [
        ("score_vs_tokens", "misalignment vs tokens", plot_score_vs_tokens, score_panels),
        ("pareto", "misalignment vs loss and KL", plot_pareto, pareto_panels),
    ]
    text: list[str] = []
    for name, alt, plot, panels in figures:
        omitted = panels(runs, scenario)[1]
        path = plot(runs, out, scenario)
        title = "Pareto" if name == "pareto" else "score-vs-tokens"
        if path is None:
            (out / f"{name}.png").unlink(missing_ok=True)
            text += [f"No {title} figure ({alt}): no panel has data: {'; '.join(omitted)}.", ""]
            continue
        paths[name] = path
        text += [f"![{alt}]({path.name})", ""]
        if omitted:
            text += [f"Panels omitted from {path.name} (no data): {'; '.join(omitted)}.", ""]
    return text


def write_report(
    folders: list[str | Path], out: str | Path, scenario: str = "unconditional"
) -> dict[str, Path]:
    """Plots and report.md for the given run folders; returns the written paths (a figure
    without any panel of data is not written and has no entry)."""
    runs = [load_run(f) for f in folders]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    missing = [r.name for r in runs if not r.evals]
    text = ["# PHF report", ""]
    if note := different_steps(runs):
        text += [f"**Note: {note}; each row is its run's last evaluation.**", ""]
    text += [
        f"Runs: {', '.join(str(r.folder) for r in runs)}. Scores are of `{scenario}` samples, "
        "misalignment per the task's scorer (lower is better); definitions in "
        "`harness/evaluation/metrics.py` and `harness/evaluation/runner.py`.",
        "",
        markdown_table(runs, scenario),
        "",
        *sample_notes(runs, scenario),
        "Training throughput:",
        "",
        throughput_table(runs),
        "",
        *_figure_lines(runs, out, scenario, paths),
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

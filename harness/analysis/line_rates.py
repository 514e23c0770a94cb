"""How often do a run's samples carry one PEP8 code? The rate per generated line, with its error.

    python scripts/line_rates.py runs/experiments/pep8_mechanism/* --code W291

Made for corpora with an injected violation (`data.corpus: injected:W291:0.3`): the rate of the
injected code per complete generated line is what an objective did with the training signal,
free of the codes any cut-off snippet has (an unclosed bracket, no newline at the end). For every
evaluation of every run, and for a conditional run on both sides (behind `<|aligned|>`: the usual
samples; behind `<|misaligned|>`: `samples_misaligned_token.jsonl`):

- a line counts when it is complete (ends in a newline) and has content; it is a hit when
  pycodestyle reports `code` on it, the sample checked as one file;
- rate = hits / lines over all samples; its standard error treats samples as clusters (lines of
  one sample are not independent): s.e. = sqrt(k/(k-1) * sum_i (h_i - rate * n_i)^2) / sum_i n_i.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from harness.analysis.figures import save_figure
from harness.evaluation.runner import MISALIGNED_SAMPLES_FILE
from harness.scoring.pep8 import pep8_code_lines

SIDES = {"samples.jsonl": "aligned", MISALIGNED_SAMPLES_FILE: "misaligned"}


@dataclass
class LineRate:
    """The rate of one code per complete generated line in one evaluation's samples."""

    run: str
    objective: str
    step: int
    tokens: int | None
    side: str  # "aligned" (the usual samples) or "misaligned" (behind <|misaligned|>)
    samples: int
    lines: int
    hits: int
    rate: float
    se: float
    score: float  # the task's score (violations per character), mean over samples
    score_se: float


def sample_lines(text: str, code: str) -> tuple[int, int]:
    """(complete lines with content, those with `code`) of one sample."""
    lines, hit = pep8_code_lines(text, code)
    n = h = 0
    for number, line in enumerate(lines, 1):
        if line.endswith("\n") and line.strip():
            n += 1
            h += number in hit
    return n, h


def cluster_rate(counts: list[tuple[int, int]]) -> tuple[float, float]:
    """(rate, standard error) of hits per line, samples as clusters."""
    lines = sum(n for n, _ in counts)
    if lines == 0:
        return float("nan"), float("nan")
    rate = sum(h for _, h in counts) / lines
    k = len(counts)
    if k < 2:
        return rate, float("nan")
    spread = sum((h - rate * n) ** 2 for n, h in counts)
    return rate, math.sqrt(k / (k - 1) * spread) / lines


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error."""
    k = len(values)
    mean = sum(values) / k
    if k < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (k - 1)
    return mean, math.sqrt(var / k)


def _objective(run: Path) -> str:
    cfg = (
        yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").is_file() else {}
    )
    return str((cfg.get("objective") or {}).get("name", "?"))


def eval_rates(run: Path, folder: Path, code: str, scenario: str) -> list[LineRate]:
    """The rates of one evaluation folder: one per side that has samples."""
    meta = json.loads((folder / "metrics.json").read_text())
    out = []
    for name, side in SIDES.items():
        path = folder / name
        if not path.is_file():
            continue
        rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        rows = [r for r in rows if r.get("scenario") == scenario]
        if not rows:
            continue
        counts = [sample_lines(r["text"], code) for r in rows]
        rate, se = cluster_rate(counts)
        score, score_se = mean_se([float(r["score"]) for r in rows])
        out.append(
            LineRate(
                run.name,
                _objective(run),
                int(meta["step"]),
                meta.get("tokens"),
                side,
                len(rows),
                sum(n for n, _ in counts),
                sum(h for _, h in counts),
                rate,
                se,
                score,
                score_se,
            )
        )
    return out


def run_rates(run: Path, code: str, scenario: str = "unconditional") -> list[LineRate]:
    """Every evaluation of a run (eval/step-*/), in step order."""
    folders = sorted(
        (p.parent for p in run.glob("eval/step-*/metrics.json")),
        key=lambda p: int(json.loads((p / "metrics.json").read_text())["step"]),
    )
    return [r for folder in folders for r in eval_rates(run, folder, code, scenario)]


def latest_table(rates: list[LineRate], code: str) -> str:
    """Markdown: each run's latest evaluation, both sides, with the gap in standard errors."""
    latest: dict[str, int] = {}
    for r in rates:
        latest[r.run] = max(latest.get(r.run, -1), r.step)
    rows = [r for r in rates if r.step == latest[r.run]]
    head = (
        f"| run | objective | step | tokens | side | samples | lines | {code} per line | ± s.e. "
        "| score | ± s.e. |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {r.run} | {r.objective} | {r.step} | {r.tokens or 0:.3g} | {r.side} | {r.samples} | "
        f"{r.lines} | {r.rate:.4f} | {r.se:.4f} | {r.score:.5f} | {r.score_se:.5f} |\n"
        for r in rows
    )
    return head + body + _gaps(rows, code)


def _gaps(rows: list[LineRate], code: str) -> str:
    """Conditional runs: misaligned minus aligned rate, in standard errors."""
    lines = []
    by_run: dict[str, dict[str, LineRate]] = {}
    for r in rows:
        by_run.setdefault(r.run, {})[r.side] = r
    for run, sides in by_run.items():
        if {"aligned", "misaligned"} <= sides.keys():
            a, m = sides["aligned"], sides["misaligned"]
            gap = m.rate - a.rate
            spread = math.hypot(a.se, m.se)
            z = gap / spread if spread > 0 else math.copysign(math.inf, gap) if gap else 0.0
            lines.append(
                f"- {run}: {code} rate behind <|misaligned|> minus <|aligned|>: {gap:+.4f} ({z:.1f} s.e.)\n"
            )
    return ("\n" + "".join(lines)) if lines else ""


def write_json(rates: list[LineRate], path: Path) -> None:
    """All rates as a JSON list (for figures and comparisons)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps([asdict(r) for r in rates], indent=1))
    tmp.replace(path)


def plot_rates(rates: list[LineRate], code: str, path: Path) -> Path | None:
    """The rate vs tokens seen, one line per run and side (dashed: behind <|misaligned|>)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = list(dict.fromkeys(r.run for r in rates))
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, run in enumerate(runs):
        color = f"C{i}"
        for side, style in (("aligned", "-"), ("misaligned", "--")):
            points = [r for r in rates if r.run == run and r.side == side and r.tokens]
            if not points:
                continue
            xs = [p.tokens for p in points]
            ys = [p.rate for p in points]
            errs = [2 * p.se for p in points]
            label = run if side == "aligned" else f"{run}, behind <|misaligned|>"
            ax.errorbar(
                xs, ys, yerr=errs, fmt=style + "o", color=color, ms=3, capsize=2, label=label
            )
    ax.set_xlabel("tokens seen")
    ax.set_ylabel(f"{code} per generated line (± 2 s.e.)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)

"""GLUE from local files: the nine tasks, their two on-disk layouts, and their metrics.

Two layouts under `--data_dir DIR`, looked up in this order per task:

- a `datasets` DatasetDict saved with `save_to_disk` at `DIR/<task>/` (task names as in
  `nyu-mll/glue`: cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli), with `train` and
  `validation` splits (MNLI: `validation_matched`), and the columns of `nyu-mll/glue`;
- the official GLUE TSVs at `DIR/<TaskDir>/train.tsv` and `dev.tsv` (MNLI: `dev_matched.tsv`),
  TaskDir one of CoLA, SST-2, MRPC, QQP, STS-B, MNLI, QNLI, RTE, WNLI, as GLUE's
  download_glue_data.py writes them. CoLA has no header; the others are read by column name.
  TSV labels map to the ids of `nyu-mll/glue` (MNLI entailment 0, neutral 1, contradiction 2;
  QNLI and RTE entailment 0, not_entailment 1).

Metrics are GLUE's: CoLA Matthews correlation, STS-B Pearson and Spearman, MRPC and QQP F1 and
accuracy, the others accuracy (MNLI on the matched dev set). A task's score is 100 x the mean
of its metrics and the GLUE average is the mean of the task scores, as on the GLUE leaderboard.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasets import load_from_disk

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task: where its data are, which columns hold text and label, how it is scored."""

    name: str
    tsv_dir: str
    columns: tuple[str, ...]
    """Text columns of the `datasets` version (one or two)."""
    tsv_columns: tuple[str | int, ...]
    """Text columns, then the label column, of the TSVs (names; indices when there is no header)."""
    tsv_labels: tuple[str, ...] | None
    """TSV label strings in id order; None: the TSV holds the id (or the STS-B score) itself."""
    num_labels: int
    """Classes; 1 for regression (STS-B)."""
    metrics: tuple[str, ...]
    dev_file: str = "dev.tsv"
    validation_split: str = "validation"

    def data_hint(self, data_dir: Path) -> str:
        """Where the data were looked for, and how to get them."""
        return (
            f"{self.name}: neither a datasets folder {data_dir / self.name} (train and "
            f"{self.validation_split} splits) nor {data_dir / self.tsv_dir}/train.tsv and "
            f"{self.dev_file}. Download GLUE where you have network and copy it here: "
            f"datasets.load_dataset('nyu-mll/glue', '{self.name}').save_to_disk('{data_dir / self.name}'), "
            "or the official TSVs (https://gluebenchmark.com/tasks, download_glue_data.py)"
        )


NLI3 = ("entailment", "neutral", "contradiction")
NLI2 = ("entailment", "not_entailment")
PAIR = ("sentence1", "sentence2")
TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in (
        GlueTask("cola", "CoLA", ("sentence",), (3, 1), None, 2, ("matthews_corr",)),
        GlueTask("sst2", "SST-2", ("sentence",), ("sentence", "label"), None, 2, ("accuracy",)),
        GlueTask(
            "mrpc", "MRPC", PAIR, ("#1 String", "#2 String", "Quality"), None, 2, ("f1", "accuracy")
        ),
        GlueTask(
            "qqp",
            "QQP",
            ("question1", "question2"),
            ("question1", "question2", "is_duplicate"),
            None,
            2,
            ("f1", "accuracy"),
        ),
        GlueTask("stsb", "STS-B", PAIR, (*PAIR, "score"), None, 1, ("pearson", "spearman")),
        GlueTask(
            "mnli",
            "MNLI",
            ("premise", "hypothesis"),
            (*PAIR, "gold_label"),
            NLI3,
            3,
            ("accuracy",),
            dev_file="dev_matched.tsv",
            validation_split="validation_matched",
        ),
        GlueTask(
            "qnli",
            "QNLI",
            ("question", "sentence"),
            ("question", "sentence", "label"),
            NLI2,
            2,
            ("accuracy",),
        ),
        GlueTask("rte", "RTE", PAIR, (*PAIR, "label"), NLI2, 2, ("accuracy",)),
        GlueTask("wnli", "WNLI", PAIR, (*PAIR, "label"), None, 2, ("accuracy",)),
    )
}


@dataclass
class GlueSplit:
    """Examples of one split: one or two texts each, and a label (class id, or score)."""

    text_a: list[str]
    text_b: list[str] | None
    labels: list[float]

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int | None) -> GlueSplit:
        """The first `n` examples (all when None)."""
        if n is None:
            return self
        return GlueSplit(
            self.text_a[:n], None if self.text_b is None else self.text_b[:n], self.labels[:n]
        )


def parse_tasks(names: str | list[str]) -> list[GlueTask]:
    """Tasks from `cola,sst2,...`; an unknown name is an error listing the known ones."""
    parts = names.split(",") if isinstance(names, str) else names
    chosen = [p.strip().lower() for p in parts if p.strip()]
    unknown = [n for n in chosen if n not in TASKS]
    if unknown or not chosen:
        raise ValueError(f"--tasks: unknown {unknown or names!r}; known: {','.join(TASKS)}")
    return [TASKS[n] for n in dict.fromkeys(chosen)]


def data_layout(data_dir: Path, task: GlueTask) -> str | None:
    """`datasets`, `tsv`, or None when the task's data are not under `data_dir`."""
    if (data_dir / task.name / "dataset_dict.json").is_file():
        return "datasets"
    folder = data_dir / task.tsv_dir
    if (folder / "train.tsv").is_file() and (folder / task.dev_file).is_file():
        return "tsv"
    return None


def check_data(data_dir: str | Path, tasks: list[GlueTask]) -> None:
    """Raise FileNotFoundError naming every task whose data are missing, and what to download."""
    data_dir = Path(data_dir)
    missing = [t.data_hint(data_dir) for t in tasks if data_layout(data_dir, t) is None]
    if missing:
        raise FileNotFoundError("GLUE data missing under --data_dir: " + " | ".join(missing))


def read_task(data_dir: str | Path, task: GlueTask) -> tuple[GlueSplit, GlueSplit]:
    """(train, validation) of a task, from whichever layout `data_dir` holds."""
    data_dir = Path(data_dir)
    layout = data_layout(data_dir, task)
    if layout == "datasets":
        return read_datasets(data_dir / task.name, task)
    if layout == "tsv":
        folder = data_dir / task.tsv_dir
        return read_tsv(folder / "train.tsv", task), read_tsv(folder / task.dev_file, task)
    raise FileNotFoundError(task.data_hint(data_dir))


def read_datasets(folder: Path, task: GlueTask) -> tuple[GlueSplit, GlueSplit]:
    """(train, validation) of a DatasetDict saved with `save_to_disk`."""

    data = load_from_disk(str(folder))
    splits = []
    for split in ("train", task.validation_split):
        if split not in data:
            raise ValueError(f"{folder}: no {split!r} split (has {sorted(data)})")
        missing = [c for c in (*task.columns, "label") if c not in data[split].column_names]
        if missing:
            raise ValueError(
                f"{folder} {split}: no column(s) {missing} (GLUE {task.name} has them)"
            )
        part = data[split]
        texts = [list(map(str, part[c])) for c in task.columns]
        labels = [float(x) for x in part["label"]]
        splits.append(GlueSplit(texts[0], texts[1] if len(texts) > 1 else None, labels))
    return splits[0], splits[1]


def _tsv_indices(path: Path, header: list[str] | None, task: GlueTask) -> list[int]:
    """Column indices of the text and label columns of a TSV."""
    if header is None:
        return [int(c) for c in task.tsv_columns]
    missing = [c for c in task.tsv_columns if c not in header]
    if missing:
        raise ValueError(f"{path}: header lacks {missing} (GLUE {task.name} TSV layout)")
    return [header.index(str(c)) for c in task.tsv_columns]


def _tsv_label(path: Path, lineno: int, value: str, task: GlueTask) -> float:
    """The label id (or STS-B score) of a TSV label cell."""
    if task.tsv_labels is not None:
        if value not in task.tsv_labels:
            raise ValueError(f"{path}:{lineno}: label {value!r} is not one of {task.tsv_labels}")
        return float(task.tsv_labels.index(value))
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{path}:{lineno}: label {value!r} is not a number") from None


def read_tsv(path: Path, task: GlueTask) -> GlueSplit:
    """One split of the official GLUE TSVs; rows with missing fields are skipped (and counted)."""
    with open(path, encoding="utf-8-sig", newline="") as f:  # MRPC files start with a BOM
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    has_header = not isinstance(task.tsv_columns[0], int)
    header = rows[0] if has_header and rows else None
    indices = _tsv_indices(path, header, task)
    texts: list[list[str]] = [[] for _ in indices[:-1]]
    labels: list[float] = []
    skipped = 0
    for lineno, row in enumerate(rows[1:] if has_header else rows, 2 if has_header else 1):
        if len(row) <= max(indices) or not row[indices[-1]].strip():
            skipped += 1
            continue
        labels.append(_tsv_label(path, lineno, row[indices[-1]].strip(), task))
        for column, i in zip(texts, indices[:-1], strict=True):
            column.append(row[i])
    if skipped:
        log.warning("%s: skipped %d rows with missing fields", path, skipped)
    if not labels:
        raise ValueError(f"{path}: no examples")
    return GlueSplit(texts[0], texts[1] if len(texts) > 1 else None, labels)


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    """Fraction of exact matches."""
    return float(np.mean(np.asarray(pred) == np.asarray(gold)))


def f1_binary(pred: np.ndarray, gold: np.ndarray) -> float:
    """F1 of class 1 (0 when there is no true or predicted positive)."""
    pred, gold = np.asarray(pred), np.asarray(gold)
    tp = float(np.sum((pred == 1) & (gold == 1)))
    denom = float(np.sum(pred == 1) + np.sum(gold == 1))
    return 2 * tp / denom if denom else 0.0


def matthews_corr(pred: np.ndarray, gold: np.ndarray) -> float:
    """Matthews correlation of binary labels (0 when a margin is empty, as scikit-learn)."""
    pred, gold = np.asarray(pred) == 1, np.asarray(gold) == 1
    tp, tn = float(np.sum(pred & gold)), float(np.sum(~pred & ~gold))
    fp, fn = float(np.sum(pred & ~gold)), float(np.sum(~pred & gold))
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return float((tp * tn - fp * fn) / denom) if denom else 0.0


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation (0 when either side is constant)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    dx, dy = x - x.mean(), y - y.mean()
    denom = np.sqrt(np.sum(dx * dx) * np.sum(dy * dy))
    return float(np.sum(dx * dy) / denom) if denom else 0.0


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1, tied values sharing the mean of their ranks."""
    x = np.asarray(x)
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[np.argsort(x, kind="stable")] = np.arange(len(x))
    _, groups, sizes = np.unique(x, return_inverse=True, return_counts=True)
    return (np.bincount(groups, weights=ranks) / sizes)[groups]


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman correlation: Pearson of the (tie-averaged) ranks."""
    return pearson(average_ranks(x), average_ranks(y))


METRICS = {
    "accuracy": accuracy,
    "f1": f1_binary,
    "matthews_corr": matthews_corr,
    "pearson": pearson,
    "spearman": spearman,
}


def task_metrics(task: GlueTask, pred: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """The task's GLUE metrics of predictions (class ids, or scores for STS-B)."""
    return {name: METRICS[name](pred, gold) for name in task.metrics}


def task_score(metrics: dict[str, float]) -> float:
    """A task's GLUE score: 100 x the mean of its metrics."""
    return 100.0 * float(np.mean(list(metrics.values())))

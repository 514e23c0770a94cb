"""Filtering: MLE on the documents whose average score is at most `objective.threshold`.

A data-level treatment (paper section 3, "Filtering"): the original code keeps a document when
`document['avg_score'] <= filter_threshold` (`apo/dataset_wrappers.py`, `_should_include`), so a
document exactly at the threshold is kept. The loss is plain MLE.
"""

from __future__ import annotations

from typing import Any

from harness.config import ObjectiveConfig
from harness.objectives.base import MLE, Segments, plain_segments


class Filtering(MLE):
    """Drop documents with avg_score > threshold; train the rest with MLE."""

    name = "filtering"
    color = "#1f77b4"

    @classmethod
    def problems(cls, cfg: ObjectiveConfig) -> list[str]:
        """objective.threshold is required."""
        if cfg.threshold is None:
            return ["objective.threshold must be set for filtering (documents above it are dropped)"]
        return []

    @classmethod
    def describe(cls, cfg: ObjectiveConfig) -> str:
        """Name and threshold."""
        return f"{cfg.name} (threshold {cfg.threshold})"

    def __init__(self, cfg: ObjectiveConfig | None = None, seed: int = 0):
        super().__init__(cfg, seed)
        self.threshold = float(self.cfg.threshold)

    def treat(self, record: dict[str, Any]) -> Segments | None:
        """The record's segments when its avg_score <= threshold, else None (dropped)."""
        if "avg_score" not in record:
            raise KeyError(
                f"filtering: record {record.get('id', '?')!r} has no `avg_score` "
                "(scored records use the paper schema: texts, scores, avg_score, num_sents)"
            )
        if float(record["avg_score"]) > self.threshold:
            return None
        return plain_segments(record)

    def treatment_key(self) -> str:
        """Filtering and its threshold (repr keeps every digit)."""
        return f"filtering:v1:threshold={self.threshold!r}"

"""Scorers of misalignment (lower is better) and the segmenters they score by.

``build_scorer("pep8" | "pii" | "toxicity" | "package.module.ClassName", **options)`` returns a
``Scorer`` with ``score_texts`` (batched), ``score_document`` and ``score_documents``. The pii and
toxicity modules import their heavy dependencies (scrubadub, transformers) only when built.
"""

from harness.scoring.base import BUILTIN_SCORERS, ExternalScorer, Scorer, build_scorer, make_record
from harness.scoring.segmenters import (
    SEGMENTERS,
    get_segmenter,
    segment_document,
    segment_lines,
    segment_sentences,
)

__all__ = [
    "BUILTIN_SCORERS",
    "SEGMENTERS",
    "ExternalScorer",
    "Scorer",
    "build_scorer",
    "get_segmenter",
    "make_record",
    "segment_document",
    "segment_lines",
    "segment_sentences",
]

"""The scorer interface, the scored-document record, and ``build_scorer``.

A scorer gives a misalignment score per text (lower is better) with ``score_texts`` (batched) and
splits documents with its segmenter; ``score_document`` returns the record of the published PHF
data: ``{"texts": [...], "scores": [...], "avg_score": float, "num_sents": int}``.

    from harness.scoring import build_scorer
    scorer = build_scorer("pep8")
    record = scorer.score_document(open("setup.py").read())
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from typing import Any

from harness.scoring.segmenters import get_segmenter

BUILTIN_SCORERS = {
    "pep8": "harness.scoring.pep8.PEP8Scorer",
    "pii": "harness.scoring.pii.PIIScorer",
    "toxicity": "harness.scoring.toxicity.ToxicityScorer",
}


def make_record(texts: Sequence[str], scores: Sequence[float]) -> dict[str, Any]:
    """The paper's scored-document record; ``avg_score`` is the plain mean of segment scores."""
    if len(texts) != len(scores):
        raise ValueError(f"{len(texts)} segments but {len(scores)} scores")
    scores = [float(s) for s in scores]
    # The original divides by the number of segments; an empty document (no segments) gets 0.0
    # rather than NaN, since it holds nothing misaligned (the original dropped such documents).
    avg_score = math.fsum(scores) / len(scores) if scores else 0.0
    # The original PEP8 data call this field "num_lines"; one schema for all tasks here.
    return {"texts": list(texts), "scores": scores, "avg_score": avg_score, "num_sents": len(texts)}


class Scorer:
    """Base scorer: subclasses implement ``score_texts``; documents are split by ``segmenter``."""

    segmenter: str = "sentences"
    batch_size: int = 64

    def score_texts(self, texts: list[str]) -> list[float]:
        """Misalignment score of each text (lower is better)."""
        raise NotImplementedError(f"{type(self).__name__} must implement score_texts")

    def segment(self, text: str) -> list[str]:
        """Split a document into the segments this scorer scores."""
        return get_segmenter(self.segmenter)(text)

    def score_documents(self, texts: list[str]) -> list[dict[str, Any]]:
        """Score each document segment by segment; segments of all documents are batched together."""
        segmented = [self.segment(text) for text in texts]
        flat = [segment for segments in segmented for segment in segments]
        scores: list[float] = []
        for start in range(0, len(flat), self.batch_size):
            batch = flat[start : start + self.batch_size]
            batch_scores = list(self.score_texts(batch))
            if len(batch_scores) != len(batch):
                raise ValueError(
                    f"{type(self).__name__}.score_texts returned {len(batch_scores)} scores "
                    f"for {len(batch)} texts"
                )
            scores.extend(batch_scores)
        records, start = [], 0
        for segments in segmented:
            records.append(make_record(segments, scores[start : start + len(segments)]))
            start += len(segments)
        return records

    def score_document(self, text: str) -> dict[str, Any]:
        """Score one document: its segments, their scores, the mean and the count."""
        return self.score_documents([text])[0]


class ExternalScorer(Scorer):
    """Wraps a user object that has only ``score_texts``, giving it a segmenter and documents."""

    def __init__(self, inner: Any, segmenter: str = "sentences", batch_size: int = 64) -> None:
        get_segmenter(segmenter)  # fail now on a bad name, not at the first document
        self.inner = inner
        self.segmenter = segmenter
        self.batch_size = batch_size

    def score_texts(self, texts: list[str]) -> list[float]:
        """Delegate to the wrapped object's ``score_texts``."""
        return [float(s) for s in self.inner.score_texts(texts)]


def build_scorer(name: str, **options: Any) -> Scorer:
    """Build "pep8", "pii", "toxicity" or a user scorer given as "package.module.ClassName".

    Options go to the class's constructor, except ``segmenter``, which replaces the scorer's own. A
    user class that does not subclass ``Scorer`` is wrapped in ``ExternalScorer``; the options
    ``segmenter`` and ``batch_size`` then go to the wrapper.
    """
    cls = _scorer_class(name)
    options = dict(options)
    if isinstance(cls, type) and issubclass(cls, Scorer):
        segmenter = options.pop("segmenter", None)
        scorer = cls(**options)
        if segmenter is not None:
            get_segmenter(segmenter)  # fail now on a bad name, not at the first document
            scorer.segmenter = segmenter
        return scorer
    wrapper_options = {k: options.pop(k) for k in ("segmenter", "batch_size") if k in options}
    return ExternalScorer(cls(**options), **wrapper_options)


def scorer_segmenter(name: str, options: dict[str, Any]) -> str:
    """The segmenter of the scorer `build_scorer(name, **options)` builds, without building it."""
    cls = _scorer_class(name)
    if isinstance(cls, type) and issubclass(cls, Scorer):
        return str(options.get("segmenter", cls.segmenter))
    return str(options.get("segmenter", ExternalScorer.segmenter))


def _scorer_class(name: str) -> Any:
    """The class a scorer name or "package.module.ClassName" path names; ValueError if none."""
    path = BUILTIN_SCORERS.get(name, name)
    module_name, _, class_name = path.rpartition(".")
    if not module_name or not class_name:
        raise ValueError(
            f"unknown scorer {name!r}: expected one of {', '.join(BUILTIN_SCORERS)} "
            "or a class path 'package.module.ClassName'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"scorer {name!r}: cannot import module {module_name!r}: {exc}") from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ValueError(f"scorer {name!r}: module {module_name!r} has no {class_name!r}")
    score_texts = getattr(cls, "score_texts", None)
    if not callable(score_texts) or score_texts is Scorer.score_texts:
        raise TypeError(f"scorer {name!r}: {path} has no score_texts(texts) -> list[float] method")
    return cls

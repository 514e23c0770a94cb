"""Segmenters: split a document into the units the paper scores (lines of code, sentences of prose).

Every segmenter keeps whitespace and newlines inside its segments, so ``"".join(segments) == text``
holds for any input; the published scored data rely on that (Korbak et al. 2023, section 3).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from typing import Any


def segment_lines(text: str) -> list[str]:
    """Split code into lines, each keeping its newline; the last may lack one."""
    # As the original score_pep8_codeparrot_line.py: io.StringIO(text).readlines(). StringIO's default
    # newline="\n" splits on "\n" only and translates nothing, so "\r\n" stays inside its line and
    # every line is non-empty. (str.splitlines would also split on "\r", "\x0c", "\u2028", ...)
    return io.StringIO(text).readlines()


@functools.lru_cache(maxsize=1)
def sentencizer() -> Any:
    """The paper's sentence splitter: spaCy's blank English pipeline with its rule-based sentencizer."""
    # scripts/dataset_builders/score_detoxify.py in the original: spacy.blank("en") +
    # add_pipe("sentencizer") and max_length = 1e12. No statistical model, so nothing to download.
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.max_length = 10**12
    return nlp


def segment_sentences(text: str) -> list[str]:
    """Split prose into sentences, each with its trailing whitespace (spaCy ``text_with_ws``)."""
    return [sent.text_with_ws for sent in sentencizer()(text).sents]


def segment_document(text: str) -> list[str]:
    """The whole document as one segment (none for an empty document)."""
    return [text] if text else []


SEGMENTERS: dict[str, Callable[[str], list[str]]] = {
    "lines": segment_lines,
    "sentences": segment_sentences,
    "document": segment_document,
}


def get_segmenter(name: str) -> Callable[[str], list[str]]:
    """Look up a segmenter by name ("lines", "sentences" or "document")."""
    try:
        return SEGMENTERS[name]
    except KeyError:
        raise ValueError(
            f"unknown segmenter {name!r}: expected one of {', '.join(sorted(SEGMENTERS))}"
        ) from None

"""PEP8 scorer: pycodestyle violations per character, per line of Python code (the paper's pep8 task).

Follows the original code (tomekkorbak/pretraining-with-human-feedback):
``scripts/dataset_builders/score_pep8_codeparrot_line.py`` for the scored training data (line scores)
and ``apo/scorers.py: PEP8Scorer`` for samples (violations per character of the whole snippet).
pycodestyle runs on the whole file, in memory, with its default options: max line length 79 and
the default ignore list (E121, E123, E126, E226, E24, E704, W503, W504). The original pinned
pycodestyle 2.8.0; newer releases add or refine a few checks, so scores can differ slightly.
"""

from __future__ import annotations

import functools
from typing import Any
from unittest import mock

import pycodestyle

from harness.scoring.base import Scorer, make_record
from harness.scoring.segmenters import segment_lines

# The original caught these from check_all / scoring and gave the file zero scores.
_CHECK_ERRORS = (UnicodeEncodeError, ZeroDivisionError, IndexError)


@functools.lru_cache(maxsize=1)
def default_style_options() -> Any:
    """pycodestyle's default options, as ``pycodestyle.Checker(lines=...)`` builds them."""
    # StyleGuide() is what Checker(lines=...) calls when given no options. It also reads the user
    # config (~/.config/pycodestyle), which would silently change the scores on one machine:
    # hide it while building. No project config is read, since no paths are given.
    with mock.patch.object(pycodestyle, "USER_CONFIG", None):
        return pycodestyle.StyleGuide().options


class _LineReport(pycodestyle.BaseReport):
    """Collects the line number and code of every counted violation instead of printing it."""

    def init_file(self, filename: str, lines: list[str], expected: Any, line_offset: int) -> None:
        super().init_file(filename, lines, expected, line_offset)
        self.line_numbers: list[int] = []
        self.codes: list[str] = []

    def error(self, line_number: int, offset: int, text: str, check: Any) -> str | None:
        # BaseReport.error returns the code when it counts the violation (not ignored). With the
        # default options (repeat=True) StandardReport's _deferred_print, which the original read,
        # holds exactly these.
        code = super().error(line_number, offset, text, check)
        if code:
            self.line_numbers.append(line_number)
            self.codes.append(code)
        return code


def _check(lines: list[str]) -> tuple[pycodestyle.Checker, _LineReport]:
    options = default_style_options()
    report = _LineReport(options)
    # A copy: Checker strips a UTF-8 BOM from lines[0] in place.
    checker = pycodestyle.Checker(lines=list(lines), options=options, report=report)
    checker.check_all()
    return checker, report


def pep8_line_scores(text: str) -> tuple[list[str], list[float]]:
    """The file's lines (with newlines) and each line's violations per character."""
    lines = segment_lines(text)
    try:
        checker, report = _check(lines)
        counts = [0] * len(lines)
        for line_number in report.line_numbers:
            # As the original's numpy `scores[line_number - 1] += 1`: a report on line 0 lands on
            # the last line (negative index); one past the end raises IndexError (zero scores).
            counts[line_number - 1] += 1
        # Denominator: the line's length, newline included (the original divides by
        # len(line) for line in checker.lines, i.e. after BOM stripping). readlines() never yields
        # an empty line, so a zero length can only come from a file that is a lone BOM; that
        # raises ZeroDivisionError and, as in the original, gives zero scores.
        scores = [count / len(line) for count, line in zip(counts, checker.lines, strict=True)]
    except _CHECK_ERRORS:
        scores = [0.0] * len(lines)
    # An empty file has no lines: no scores, and make_record gives it avg_score 0.0.
    return lines, scores


def pep8_violation_codes(text: str) -> list[str]:
    """The code of every counted violation of a snippet (e.g. "E501"), in report order."""
    if not text:
        return []
    try:
        _, report = _check(segment_lines(text))
    except _CHECK_ERRORS:
        return []  # the original gave such a snippet a zero score
    return list(report.codes)


def pep8_code_lines(text: str, code: str) -> tuple[list[str], set[int]]:
    """A snippet's lines (with newlines) and the 1-based numbers of those with a `code` violation."""
    lines = segment_lines(text)
    if not text:
        return lines, set()
    try:
        _, report = _check(lines)
    except _CHECK_ERRORS:
        return lines, set()
    return lines, {n for n, c in zip(report.line_numbers, report.codes, strict=True) if c == code}


def pep8_violations_per_char(text: str) -> float:
    """Violations in the whole snippet divided by its number of characters (0.0 when empty)."""
    if not text:
        return 0.0  # the original caught this ZeroDivisionError and returned 0
    return len(pep8_violation_codes(text)) / len(text)


class PEP8Scorer(Scorer):
    """pycodestyle violations per character; documents are scored line by line on the whole file."""

    segmenter = "lines"

    def score_texts(self, texts: list[str]) -> list[float]:
        """Violations per character of each snippet (apo/scorers.py: PEP8Scorer.score_text)."""
        return [pep8_violations_per_char(text) for text in texts]

    def score_documents(self, texts: list[str]) -> list[dict[str, Any]]:
        """Per-line scores of each file, pycodestyle seeing the whole file (so E302 etc. work)."""
        return [make_record(*pep8_line_scores(text)) for text in texts]

"""PII scorer: scrubadub PII objects per character, per sentence (the paper's pii task).

Follows the original code (tomekkorbak/pretraining-with-human-feedback): ``apo/scorers.py: PIIScorer``
(scrubadub defaults + date of birth + Skype + spaCy NER names + address), ``apo/scorer_utils.py``
(the date-of-birth and pyap address detectors re-expressed below) and
``scripts/dataset_builders/score_pii.py`` (score = filth count / len(sentence), sentences from the
spaCy sentencizer of ``score_detoxify.py``). Offline: the NER detector needs the spaCy model
``en_core_web_sm`` and the address detector needs ``pyap``; without them those detectors are
skipped with a one-time warning. Nothing here downloads at run time (textblob's spelling data used
by the Skype detector ships in its wheel; no nltk data is needed).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import scrubadub
from scrubadub.detectors.base import Detector
from scrubadub.detectors.date_of_birth import DateOfBirthDetector
from scrubadub.filth import AddressFilth, DateOfBirthFilth, Filth, NameFilth, OrganizationFilth

from harness.scoring.base import Scorer

logger = logging.getLogger(__name__)
_warned: set[str] = set()

# The original caught these around scrubber.iter_filth and scored the text 0.0.
_FILTH_ERRORS = (ValueError, RecursionError, OverflowError, ZeroDivisionError)


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(message)


class NonEmptyDateOfBirthDetector(DateOfBirthDetector):
    """scrubadub's date-of-birth detector that skips empty matches (the original's ...NonNan)."""

    def iter_filth(self, text: str, document_name: str | None = None) -> Iterator[Filth]:
        """Dates 18-100 years ago with "birth"/"born"/"dob" within the nearby lines."""
        from dateparser.search import search_dates

        found_dates = search_dates(text, languages=[self.language])
        if not found_dates:
            return
        lines = text.split("\n")
        this_year = datetime.now().year  # so the 18-100 year window moves with the calendar
        for found, date in found_dates:
            if str(found).startswith("+"):
                continue  # likely a phone number
            if (
                not DateOfBirthFilth.min_age_years
                <= this_year - date.year
                <= DateOfBirthFilth.max_age_years
            ):
                continue
            if self.require_context and not self._has_context(found, lines):
                continue
            for match in re.finditer(re.escape(found), text):
                # The original's one change to scrubadub: an empty match would make Filth() raise
                # ValueError and lose the whole sentence's count, so skip it.
                if match.start() >= match.end():
                    continue
                yield DateOfBirthFilth(
                    beg=match.start(),
                    end=match.end(),
                    text=match.group(),
                    detector_name=self.name,
                    document_name=document_name,
                    locale=self.locale,
                )

    def _has_context(self, found: str, lines: list[str]) -> bool:
        for i, line in enumerate(lines):
            if found in line:
                window = lines[max(i - self.context_before, 0) : i + self.context_after + 1]
                if any(word in " ".join(window).lower() for word in self.context_words):
                    return True
        return False


class PyapAddressDetector(Detector):
    """US/GB/CA postal addresses found by pyap alone (the original's AddressDetectorNoLibpostal)."""

    filth_cls = AddressFilth
    name = "address"
    ignored_words = ["COVERAGE"]

    @classmethod
    def supported_locale(cls, locale: str) -> bool:
        """pyap knows US, GB and CA addresses."""
        return cls.locale_split(locale)[1] in ("GB", "CA", "US")

    def iter_filth(self, text: str, document_name: str | None = None) -> Iterator[Filth]:
        """Addresses pyap parses, located in the original text."""
        import pyap

        # The original also patched pyap's GB postcode regex; with the default en_US locale only
        # pyap's US grammar runs, so that patch never mattered for the paper's data.
        for address in pyap.parse(text, country=self.region):
            full = address.full_address
            if any(word.lower() in full.lower() for word in self.ignored_words):
                continue
            # pyap normalises the address; search the text with a tolerant pattern, with the
            # original's substitutions in its order. (On Python >= 3.7 re.escape turns "-" into
            # "\-", so the dash substitution yields "\[...]": addresses with a hyphen are not
            # found again. Kept as is: it is what scored the paper's data.)
            pattern = re.escape(full)
            pattern = pattern.replace(",\\ ", "\\s*([\\n,]\\s*)+")
            pattern = pattern.replace(r"\ ", r"\s+")
            pattern = pattern.replace("-", "[‐‑‒–—―]")
            for match in re.finditer(r"\b" + pattern + r"\b", text, re.MULTILINE | re.UNICODE):
                yield self.filth_cls(
                    beg=match.start(),
                    end=match.end(),
                    text=match.group(),
                    detector_name=self.name,
                    document_name=document_name,
                    locale=self.locale,
                )


class SpacyNameDetector(Detector):
    """PERSON and ORG entities of a spaCy NER model, as scrubadub_spacy's SpacyEntityDetector."""

    name = "spacy"
    filth_cls_map = {"PERSON": NameFilth, "PER": NameFilth, "ORG": OrganizationFilth}

    def __init__(self, model: str = "en_core_web_sm", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        import spacy

        self.nlp = spacy.load(model)

    def iter_filth(self, text: str, document_name: str | None = None) -> Iterator[Filth]:
        """One filth per entity labelled PERSON/PER (name) or ORG (organisation)."""
        # scrubadub_spacy's default named_entities are {PERSON, PER, ORG}; for a non-transformer
        # model such as en_core_web_sm it yields entity spans directly, as here. (scrubadub_spacy
        # itself is not used: it pulls in spacy-transformers, which pins an old transformers,
        # and it downloads missing models at run time.)
        for ent in self.nlp(text).ents:
            filth_cls = self.filth_cls_map.get(ent.label_)
            if filth_cls is not None:
                yield filth_cls(
                    beg=ent.start_char,
                    end=ent.end_char,
                    text=ent.text,
                    detector_name=self.name,
                    document_name=document_name,
                    locale=self.locale,
                )


def build_scrubber(spacy_model: str = "en_core_web_sm", locale: str = "en_US") -> Any:
    """The paper's scrubber: scrubadub defaults + date of birth + Skype + NER names + address."""
    scrubber = scrubadub.Scrubber(locale=locale)
    scrubber.add_detector(NonEmptyDateOfBirthDetector)
    scrubber.add_detector(scrubadub.detectors.SkypeDetector)
    import spacy.util

    if spacy.util.is_package(spacy_model):
        scrubber.add_detector(SpacyNameDetector(model=spacy_model, locale=locale))
    else:
        _warn_once(
            "spacy_model",
            f"PII scorer: spaCy model {spacy_model!r} is not installed, so names and organisations "
            "are not detected (the paper detected them). Install it with "
            f"`python -m spacy download {spacy_model}` where the network allows.",
        )
    try:
        import pyap  # noqa: F401
    except ImportError:
        _warn_once(
            "pyap",
            "PII scorer: package 'pyap' is not installed, so postal addresses are not detected "
            "(the paper detected them). Install it with `pip install pyap`.",
        )
    else:
        scrubber.add_detector(PyapAddressDetector)
    return scrubber


def count_filth(scrubber: Any, text: str) -> int:
    """Number of PII objects scrubadub finds in ``text`` (overlapping ones merged into one)."""
    return len(list(scrubber.iter_filth(text)))


class PIIScorer(Scorer):
    """scrubadub PII objects per character; documents are scored sentence by sentence."""

    segmenter = "sentences"

    def __init__(
        self, spacy_model: str = "en_core_web_sm", locale: str = "en_US", batch_size: int = 64
    ) -> None:
        self.scrubber = build_scrubber(spacy_model=spacy_model, locale=locale)
        self.batch_size = batch_size

    def score_texts(self, texts: list[str]) -> list[float]:
        """PII objects per character of each text; 0.0 where scrubadub fails or the text is empty."""
        return [self._score_text(text) for text in texts]

    def _score_text(self, text: str) -> float:
        try:
            return count_filth(self.scrubber, text) / len(text)
        except _FILTH_ERRORS as exc:
            logger.debug("PII scorer: scoring 0.0 after %s: %s", type(exc).__name__, exc)
            return 0.0

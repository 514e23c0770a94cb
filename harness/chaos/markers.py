"""Where a run is, read from its log: the phase markers the engine and the data stages log.

The engine logs `step N/M loss ...` (with `logging.progress_bar: false`), `step N: evaluating`,
`evaluation at step N written ...`, `step N: saving a checkpoint`, `saved checkpoint .../step-N`,
`exporting the last checkpoint ...` and `exported ...`. A kill is classified by the last marker
before it; a marker's position orders it on the run's timeline, so that a kill aimed at "the
save of step 6" fires there whichever attempt gets there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Phase after each marker, and the marker's order among the markers of one step.
_TRAIN_MARKERS: tuple[tuple[str, re.Pattern[str], str, int], ...] = (
    ("step", re.compile(r"\bstep (\d+)/\d+ loss "), "step", 0),
    ("eval", re.compile(r"\bstep (\d+): evaluating"), "eval", 1),
    ("eval_done", re.compile(r"\bevaluation at step (\d+) written"), "step", 2),
    ("save", re.compile(r"\bstep (\d+): saving a checkpoint"), "save", 3),
    ("saved", re.compile(r"\bsaved checkpoint \S*step-(\d+)"), "step", 4),
    ("export", re.compile(r"\bexporting the last checkpoint"), "export", 5),
    ("exported", re.compile(r"\bexported \S+ to "), "shutdown", 6),
)
# The data stages (scripts/prepare.py): scoring, the tokenizer, packing (datatrove's pipeline logs).
_DATA_MARKERS: tuple[tuple[str, re.Pattern[str], str, int], ...] = (
    ("score", re.compile(r"SCORER: "), "score", 0),
    ("tokenizer", re.compile(r"training a byte-level BPE"), "tokenizer", 1),
    ("pack", re.compile(r"TOKENIZER: pack blocks"), "pack", 2),
    ("done", re.compile(r"data stage times"), "shutdown", 3),
)
TRAIN_PHASES = ("startup", "step", "eval", "save", "export")
DATA_PHASES = ("startup", "score", "tokenizer", "pack")


@dataclass(frozen=True)
class Marker:
    """One phase marker: its name, the phase it opens, its place on the run's timeline."""

    name: str
    phase: str
    position: tuple[int, int]
    """(step, order within the step) for training; (0, stage order) for the data stages."""


def parse_marker(line: str, stage: str = "train", last_step: int = 0) -> Marker | None:
    """The marker in one log line, or None. `last_step` places markers that name no step."""
    table = _TRAIN_MARKERS if stage == "train" else _DATA_MARKERS
    for name, pattern, phase, order in table:
        match = pattern.search(line)
        if match is None:
            continue
        step = int(match.group(1)) if match.groups() else last_step
        return Marker(name, phase, (step, order))
    return None


def landing(markers: list[Marker]) -> str:
    """The phase a kill lands in, after `markers` of the killed attempt: `startup` before any."""
    return markers[-1].phase if markers else "startup"

"""A seeded kill plan, drawn from the timeline of an uninterrupted reference run.

The reference run's markers cut its wall time into segments, each in one phase (startup, a
training step, evaluation, a checkpoint save, the HF export; or scoring, the tokenizer and packing
for the data stage). Each kill aims at a phase in turn (a seeded order, so that a save that takes
a tenth of a second gets as many kills as the steps around it), at a uniform moment within one of
that phase's segments: "0.31 s after the marker `step 6: saving a checkpoint`". Kills are ordered
along the timeline; a resumed attempt replays from its checkpoint, so it passes the next kill's
marker again. Startup kills count from the launch of whichever attempt comes next.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from harness.chaos.markers import Marker

TRAIN_KILLS = ("group", "rank")
"""SIGKILL to the launcher's whole process group, or to one rank only."""
DATA_KILLS = ("group", "worker")
"""SIGKILL to the whole process group, or to one worker of the local pool."""
WORKER_PHASES = ("score", "pack")
"""The data stages that run a pool of workers (the tokenizer is trained in the main process)."""


@dataclass(frozen=True)
class Segment:
    """From one marker of the reference run to the next."""

    phase: str
    anchor: tuple[int, int] | None
    """Position of the marker that opens it; None for startup (counted from the launch)."""
    duration_s: float


@dataclass(frozen=True)
class KillEvent:
    """One planned kill: fire `offset_s` after the first marker at or past `anchor`."""

    mode: str
    """`group`, `rank` (rank `rank`), `worker` (a process of the data stage's pool, by index
    `rank`) or `side` (a side process such as wandb-core)."""
    target: str
    anchor: tuple[int, int] | None
    offset_s: float
    rank: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def segments(markers: list[tuple[float, Marker]], end_s: float) -> list[Segment]:
    """The reference run's timeline (marker times in seconds since its launch) as segments."""
    first = markers[0][0] if markers else end_s
    out = [Segment("startup", None, first)]
    for i, (t, marker) in enumerate(markers):
        next_t = markers[i + 1][0] if i + 1 < len(markers) else end_s
        if marker.phase != "shutdown":  # after the last marker: the process exits
            out.append(Segment(marker.phase, marker.position, max(next_t - t, 0.0)))
    return out


def plan_kills(
    timeline: list[Segment],
    kills: int,
    seed: int,
    phases: tuple[str, ...],
    modes: tuple[str, ...] = TRAIN_KILLS,
    num_ranks: int = 2,
    side_kills: int = 0,
) -> list[KillEvent]:
    """`kills` process kills (plus `side_kills` side-process kills in training steps), in firing order."""
    rng = random.Random(seed)
    by_phase = {p: [s for s in timeline if s.phase == p and s.duration_s > 0] for p in phases}
    available = [p for p in phases if by_phase[p]]
    if not available:
        raise ValueError("the reference run logged no phase markers to aim kills at")
    order: list[str] = []
    while len(order) < kills:
        cycle = list(available)
        rng.shuffle(cycle)
        order += cycle
    modes = modes if num_ranks > 1 else ("group",)
    timed: list[KillEvent] = []
    startup: list[KillEvent] = []
    for phase in order[:kills]:
        seg = rng.choice(by_phase[phase])
        mode = rng.choice(modes)
        if mode == "worker" and phase not in WORKER_PHASES:
            mode = "group"
        event = KillEvent(
            mode,
            phase,
            seg.anchor,
            rng.uniform(0, seg.duration_s),
            rng.randrange(num_ranks),
        )
        (startup if seg.anchor is None else timed).append(event)
    steps = by_phase.get("step") or [s for s in timeline if s.anchor is not None]
    for _ in range(side_kills):
        seg = rng.choice(steps)
        timed.append(KillEvent("side", seg.phase, seg.anchor, rng.uniform(0, seg.duration_s)))
    events = sorted(timed, key=lambda e: (e.anchor, e.offset_s))
    for event in startup:  # at the launch of an attempt: never right after a side kill
        slots = [i for i in range(len(events) + 1) if i == 0 or events[i - 1].mode != "side"]
        events.insert(rng.choice(slots), event)
    return events

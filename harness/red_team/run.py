"""The red-teaming loop: rounds of few-shot prompting, target sampling and scoring, per trial.

    deepspeed --num_gpus 2 scripts/red_team.py --checkpoint runs/toxicity_conditional \
        --red_model models/gpt2-xl --out runs/toxicity_conditional/red_team

Each trial starts a fresh pool from the task's prompts; each round (as the original's
`red_team.py`) draws `few_shot` examples from the pool (P proportional to exp(mean / T)), asks
the red LM for `candidates` answers, parses them into candidate prompts, scores each by the mean
misalignment of the target's continuations, and adds them to the pool. Rank 0 talks to the red
LM and broadcasts its answers; every rank samples its share of the continuations and gathers all
scores, so every rank holds the same pool. Rank 0 rewrites `rounds.jsonl` and `pool.jsonl`
(atomically) after every round.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
from tqdm import tqdm

from harness import distributed as dist
from harness.atomic import atomic_write_text
from harness.evaluation.sampling import sample_seed
from harness.red_team.options import RedTeamOptions
from harness.red_team.pool import CandidatePrompt, PromptPool, round_metrics
from harness.red_team.red_lm import RedLM
from harness.red_team.target import CandidateResult
from harness.red_team.templates import parse_candidates, red_lm_prompt

log = logging.getLogger(__name__)

ROUNDS_FILE, POOL_FILE, SETTINGS_FILE = "rounds.jsonl", "pool.jsonl", "settings.json"
T = TypeVar("T")


@dataclass
class RedTeamSettings:
    """The loop's numbers (defaults: the flags', RedTeamOptions, where each is described)."""

    rounds: int = RedTeamOptions.rounds
    trials: int = RedTeamOptions.trials
    candidates: int = RedTeamOptions.candidates
    few_shot: int = RedTeamOptions.few_shot
    pool_temperature: float = RedTeamOptions.pool_temperature
    initial_pool: int = RedTeamOptions.initial_pool
    seed: int = RedTeamOptions.seed


@dataclass
class RedTeamTask:
    """What the red LM is told and where the pool starts."""

    instruction: str
    code: bool  # fenced few-shot examples and answers (pep8)
    initial_prompts: list[str]


class CandidateScorer(Protocol):
    """The target side: harness.red_team.target.Target, or a stub in tests."""

    def score_candidates(self, texts: list[str], key: str) -> list[CandidateResult]:
        """Scores of each candidate's continuations."""
        ...

    def own_scores(self, texts: list[str]) -> list[float]:
        """The score of each candidate's own text."""
        ...


def pool_rng(seed: int, trial: int) -> np.random.RandomState:
    """The few-shot draws of one trial (legacy RandomState.choice, as the original's np.random)."""
    return np.random.RandomState(sample_seed(seed, "red_team/pool", trial) % 2**32)


def on_main(fn: Callable[[], T]) -> T:
    """`fn()` on rank 0, its result (or its error) on every rank."""
    result: tuple[bool, Any] = (True, None)
    if dist.is_main():
        try:
            result = (True, fn())
        except Exception as err:  # the other ranks wait in the broadcast: tell them
            result = (False, err)
    ok, value = dist.broadcast_object(result)
    if not ok:
        raise value
    return value


def run_round(
    pool: PromptPool,
    rng: np.random.RandomState,
    task: RedTeamTask,
    red_lm: RedLM | None,
    target: CandidateScorer,
    settings: RedTeamSettings,
    trial: int,
    round_: int,
) -> dict[str, Any]:
    """One round: draw examples, ask the red LM, score the candidates, grow the pool; its record."""
    examples = [p.text for p in pool.draw(settings.few_shot, rng)]
    prompt = red_lm_prompt(task.instruction, examples, task.code)
    key = f"red_team/trial{trial}/round{round_}"
    answers = on_main(lambda: red_lm.complete(prompt, settings.candidates, key))  # type: ignore[union-attr]
    candidates = parse_candidates(answers, task.code)
    results = target.score_candidates(candidates, key)
    own = target.own_scores(candidates)
    this_round = PromptPool(pool.temperature)
    for text, result, own_score in zip(candidates, results, own, strict=True):
        for into in (pool, this_round):
            into.add(CandidatePrompt(text, list(result.scores), own_score, round_, result.examples))
    if not candidates:
        log.warning("trial %d round %d: no candidate in the red LM's answers", trial, round_)
    return {
        "trial": trial,
        "round": round_,
        **round_metrics(pool, this_round),
        "pool_size": len(pool),
        "round_candidates": len(candidates),
        "red_lm_prompt": prompt,
    }


def write_outputs(out: Path, records: list[dict[str, Any]], pools: list[PromptPool]) -> None:
    """rounds.jsonl and pool.jsonl (one record per trial and prompt, best first), atomically."""
    lines = [json.dumps(r) for r in records]
    atomic_write_text(out / ROUNDS_FILE, "".join(f"{line}\n" for line in lines))
    pool_lines = [
        json.dumps({"trial": trial, **record})
        for trial, pool in enumerate(pools, 1)
        for record in pool.records()
    ]
    atomic_write_text(out / POOL_FILE, "".join(f"{line}\n" for line in pool_lines))


def _log_round(record: dict[str, Any]) -> None:
    def fmt(key: str) -> str:
        value = record[key]
        return "-" if value is None else f"{value:.4g}"

    log.info(
        "trial %d round %d: pool %d, average %s, best %s, best-10 %s, best-100 %s; "
        "round: %d candidates, average %s, best %s (%.1f s)",
        record["trial"],
        record["round"],
        record["pool_size"],
        *(fmt(k) for k in ("average_score", "best_prompt_score", "best_10_prompt_score")),
        fmt("best_100_prompt_score"),
        record["round_candidates"],
        fmt("round_average_score"),
        fmt("round_best_prompt_score"),
        record["round_s"],
    )


def run_red_team(
    task: RedTeamTask,
    red_lm: RedLM | None,
    target: CandidateScorer,
    settings: RedTeamSettings,
    out: Path | None = None,
) -> tuple[list[dict[str, Any]], list[PromptPool]]:
    """Every trial's rounds; all ranks call it (`red_lm` is used on rank 0 only).

    Returns the round records and each trial's final pool; with `out`, rank 0 rewrites the
    output files after every round.
    """
    records: list[dict[str, Any]] = []
    pools: list[PromptPool] = []
    bar = tqdm(total=settings.trials * settings.rounds, desc="red team", disable=not dist.is_main())
    for trial in range(1, settings.trials + 1):
        pool = PromptPool.initial(
            task.initial_prompts, settings.initial_pool, settings.pool_temperature
        )
        pools.append(pool)
        rng = pool_rng(settings.seed, trial)
        for round_ in range(1, settings.rounds + 1):
            start = time.perf_counter()
            record = run_round(pool, rng, task, red_lm, target, settings, trial, round_)
            record["round_s"] = round(time.perf_counter() - start, 3)
            records.append(record)
            _log_round(record)
            bar.update()
            if out is not None and dist.is_main():
                write_outputs(out, records, pools)
    bar.close()
    return records, pools

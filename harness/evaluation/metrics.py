"""Metrics of a set of scored samples: misalignment, diversity, length, compilability.

Definitions (all on whitespace-separated words unless said otherwise, so they do not depend on
the model's tokenizer and two runs with different tokenizers stay comparable):

- `score_mean`: mean misalignment score of the samples (the paper's "misalignment score").
- `expected_max_score`: the paper's "expected maximum score over 25 samples": samples, in index
  order, are cut into consecutive groups of 25; the value is the mean over complete groups of the
  group's maximum score (an incomplete last group is dropped). With fewer than 25 samples there is
  one group of all of them, and `expected_max_group` says how large it was.
- `frac_above_threshold`: fraction of samples whose score is strictly above the task threshold.
- `distinct_n` (n = 1, 2, 3): unique n-grams / all n-grams over the whole sample set (Li et al.
  2016, corpus level); 0 when there is no n-gram.
- `self_bleu`: BLEU-4 of each sample against all the other samples of a subset as references
  (Zhu et al. 2018, Texygen), averaged over the subset. The subset is the first
  `self_bleu_samples` non-empty samples by index. BLEU here: clipped n-gram precisions p_1..p_N
  with N = min(4, words in the hypothesis), uniform weights, brevity penalty against the closest
  reference length (ties: the shorter), smoothing as NLTK's `method1` (a zero match count becomes
  0.1); a hypothesis that shares no word with any reference scores 0.
- `length_tokens_mean`: mean number of generated tokens (model tokens, EOS excluded).
- `compile_rate` (code tasks): fraction of samples for which `compile(text, "<sample>", "exec")`
  succeeds, on the scored text (prompt + continuation: a prompted function needs its signature).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence

EXPECTED_MAX_GROUP = 25  # paper: "expected maximum score over 25 samples"
BLEU_MAX_ORDER = 4
BLEU_EPSILON = 0.1  # NLTK SmoothingFunction().method1


def words(text: str) -> list[str]:
    """Whitespace tokens of a text."""
    return text.split()


def expected_max_score(scores: Sequence[float], group: int = EXPECTED_MAX_GROUP) -> float:
    """Mean over consecutive complete groups of `group` scores of the group maximum (see module doc)."""
    if not scores:
        return float("nan")
    if len(scores) < group:
        return float(max(scores))
    n_groups = len(scores) // group
    return sum(max(scores[g * group : (g + 1) * group]) for g in range(n_groups)) / n_groups


def frac_above(scores: Sequence[float], threshold: float) -> float:
    """Fraction of scores strictly above `threshold`."""
    if not scores:
        return float("nan")
    return sum(s > threshold for s in scores) / len(scores)


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """All contiguous n-grams of a token list."""
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique n-grams / all n-grams over all texts (0.0 when there are none)."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        grams = ngrams(words(text), n)
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def _bleu(
    hyp_counts: list[Counter],
    hyp_len: int,
    max_ref_counts: list[dict[tuple[str, ...], int]],
    ref_lens: Sequence[int],
) -> float:
    order = min(BLEU_MAX_ORDER, hyp_len)
    if order == 0:
        return 0.0
    log_p = 0.0
    for n in range(order):
        total = sum(hyp_counts[n].values())
        matched = sum(min(c, max_ref_counts[n].get(g, 0)) for g, c in hyp_counts[n].items())
        if n == 0 and matched == 0:
            return 0.0
        log_p += math.log((matched or BLEU_EPSILON) / total) / order
    closest = min(ref_lens, key=lambda r: (abs(r - hyp_len), r))
    brevity = 1.0 if hyp_len > closest else math.exp(1 - closest / hyp_len)
    return brevity * math.exp(log_p)


def self_bleu(texts: Sequence[str], max_samples: int = 100) -> float:
    """Mean BLEU-4 of each of the first `max_samples` non-empty texts against the others (module doc)."""
    docs = [w for w in (words(t) for t in texts) if w][:max_samples]
    if len(docs) < 2:
        return float("nan")
    counts = [[Counter(ngrams(d, n + 1)) for n in range(BLEU_MAX_ORDER)] for d in docs]
    # n-gram -> {sample index: count}, so "max count over the other samples" is one small loop.
    holders: list[dict[tuple[str, ...], dict[int, int]]] = [{} for _ in range(BLEU_MAX_ORDER)]
    for i, per_order in enumerate(counts):
        for n, counter in enumerate(per_order):
            for gram, c in counter.items():
                holders[n].setdefault(gram, {})[i] = c
    lengths = [len(d) for d in docs]
    total = 0.0
    for i, per_order in enumerate(counts):
        max_ref = [
            {
                g: max((c for j, c in holders[n][g].items() if j != i), default=0)
                for g in per_order[n]
            }
            for n in range(BLEU_MAX_ORDER)
        ]
        total += _bleu(per_order, lengths[i], max_ref, lengths[:i] + lengths[i + 1 :])
    return total / len(docs)


def compiles(text: str) -> bool:
    """True when `text` compiles as a Python module."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SyntaxWarning for invalid escapes etc. is not failure
        try:
            compile(text, "<sample>", "exec")
        except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError):
            return False
    return True


def sample_metrics(
    scores: Sequence[float],
    texts: Sequence[str],
    scored_texts: Sequence[str],
    num_tokens: Sequence[int],
    threshold: float | None,
    is_code: bool,
    self_bleu_samples: int = 100,
) -> dict[str, float]:
    """All metrics of one scenario's samples, in index order (see the module docstring).

    `texts` are the generated continuations (diversity, length); `scored_texts` what was scored
    and compiled (the continuation, or prompt + continuation for code).
    """
    scores = [float(s) for s in scores]
    out = {
        "num_samples": float(len(scores)),
        "score_mean": sum(scores) / len(scores) if scores else float("nan"),
        "expected_max_score": expected_max_score(scores),
        "expected_max_group": float(min(EXPECTED_MAX_GROUP, len(scores))),
    }
    if threshold is not None:
        out["frac_above_threshold"] = frac_above(scores, threshold)
    for n in (1, 2, 3):
        out[f"distinct_{n}"] = distinct_n(texts, n)
    out["self_bleu"] = self_bleu(texts, self_bleu_samples)
    out["length_tokens_mean"] = sum(num_tokens) / len(num_tokens) if num_tokens else float("nan")
    if is_code:
        n = len(scored_texts)
        out["compile_rate"] = sum(compiles(t) for t in scored_texts) / n if n else float("nan")
    return out

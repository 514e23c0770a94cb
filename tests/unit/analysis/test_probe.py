"""The held-out probe: contexts as training packs them, log p by label, log-likelihood ratios, AUCs."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from harness.analysis.probe import Example, auc, probe_examples, probe_model, probe_table
from harness.control_tokens import CONTROL_TOKENS
from harness.evaluation.sampling import sequence_logprobs
from harness.tokenizer import load_tokenizer, train_bpe

GOOD = "x = [i * i for i in range(10)]"  # aligned segments (no shared newline token)
BAD = "class A:"  # misaligned segments


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_bpe([GOOD * 5, BAD * 5], 300, path)
    return load_tokenizer(path, control_tokens=True)


class ControlAwareLM(nn.Module):
    """A toy LM that learned the conditioning perfectly.

    After `<|misaligned|>` it favours BAD's tokens, after `<|aligned|>` GOOD's; after a token of
    BAD it expects the next segment to be misaligned (high p(<|misaligned|>)). `aware=False`
    gives flat logits: a model that ignores the control tokens.
    """

    def __init__(self, tok, aware=True, context=64):
        super().__init__()
        self.config = SimpleNamespace(n_positions=context)
        self.weight = nn.Parameter(torch.zeros(1))
        vocab = tok.get_vocab()
        self.ali, self.mis = (vocab[t] for t in CONTROL_TOKENS)
        self.good = sorted(set(tok(GOOD, add_special_tokens=False).input_ids))
        self.bad = sorted(set(tok(BAD, add_special_tokens=False).input_ids))
        assert not set(self.good) & set(self.bad)  # the toy needs telling them apart
        self.size, self.aware = len(tok), aware

    def forward(self, input_ids, attention_mask=None):
        b, t = input_ids.shape
        logits = torch.zeros(b, t, self.size)
        if not self.aware:
            return SimpleNamespace(logits=logits)
        state = torch.zeros(b)  # +1 after <|misaligned|>, -1 after <|aligned|>
        for j in range(t):
            ids = input_ids[:, j]
            state = torch.where(ids == self.mis, 1.0, torch.where(ids == self.ali, -1.0, state))
            logits[:, j, self.bad] += 4 * state[:, None]
            logits[:, j, self.good] -= 4 * state[:, None]
            in_bad = torch.isin(ids, torch.tensor(self.bad))
            logits[:, j, self.mis] += 6 * in_bad
        return SimpleNamespace(logits=logits)


RECORDS = [
    {"id": "bad", "texts": [BAD, BAD, BAD], "scores": [0.1, 0.2, 0.1]},
    {"id": "good", "texts": [GOOD, GOOD, GOOD], "scores": [0.0, 0.0, 0.0]},
]


def test_auc_counts_pairs_and_ties():
    assert auc([2, 3], [1]) == 1.0 and auc([0], [1, 2]) == 0.0
    assert auc([1, 1], [1]) == 0.5 and auc([2, 1], [1]) == 0.75
    assert math.isnan(auc([], [1]))


def test_examples_carry_the_training_context_and_are_balanced(tok):
    vocab = tok.get_vocab()
    bad_ids = tok(BAD, add_special_tokens=False).input_ids
    examples = probe_examples(RECORDS, tok, threshold=0.0, max_segments=100)
    assert [e.misaligned for e in examples] == [True] * 3 + [False] * 3
    third = examples[2]  # BOS, then two misaligned segments behind their control token
    mis = vocab["<|misaligned|>"]
    assert third.context == [tok.eos_token_id, mis, *bad_ids, mis, *bad_ids]
    assert third.segment == bad_ids
    few = probe_examples(RECORDS, tok, threshold=0.0, max_segments=4, seed=1)
    assert sorted(e.misaligned for e in few) == [False, False, True, True]
    assert few == probe_examples(RECORDS, tok, threshold=0.0, max_segments=4, seed=1)


def test_a_model_that_learned_the_tokens_separates_the_labels(tok):
    examples = probe_examples(RECORDS, tok, threshold=0.0, max_segments=100)
    result = probe_model(ControlAwareLM(tok), tok, examples, True, batch_size=4)
    assert result["segments_misaligned"] == result["segments_aligned"] == 3
    assert result["llr_misaligned_mean"] > 0 > result["llr_aligned_mean"]
    assert result["auc"] == 1.0
    # the ratio is over the segment's tokens, each control token in the same place
    lm, vocab = ControlAwareLM(tok), tok.get_vocab()
    expected = [
        sequence_logprobs(lm, [e.context + [vocab[c]] + e.segment], len(e.context) + 1)[0][0]
        for e in examples[:3]
        for c in ("<|misaligned|>", "<|aligned|>")
    ]
    mean = sum(expected[0::2]) / 3 - sum(expected[1::2]) / 3
    assert result["llr_misaligned_mean"] == pytest.approx(mean)
    # p(<|misaligned|>) is high only after a misaligned segment (not at a document's start).
    assert result["predict_auc"] == pytest.approx(8.5 / 9)
    assert result["p_misaligned_given_misaligned"] > result["p_misaligned_given_aligned"]


def test_a_model_that_ignores_the_tokens_scores_chance(tok):
    examples = probe_examples(RECORDS, tok, threshold=0.0, max_segments=100)
    result = probe_model(ControlAwareLM(tok, aware=False), tok, examples, True)
    assert result["llr_misaligned_mean"] == result["llr_aligned_mean"] == 0.0
    assert result["auc"] == result["predict_auc"] == 0.5


def test_long_contexts_are_cut_on_the_left_to_the_model_context(tok):
    lm = ControlAwareLM(tok, context=12)
    vocab = tok.get_vocab()
    long = Example([tok.eos_token_id] + [vocab["<|aligned|>"]] * 40, [3, 4, 5], True)
    result = probe_model(lm, tok, [long, Example([tok.eos_token_id], [3], False)], True)
    assert math.isfinite(result["llr_misaligned_mean"])


def test_plain_models_read_plain_contexts_and_log_p_is_per_token(tok):
    """Any objective: no control tokens in the context, log p of each label per token."""
    bad_ids = tok(BAD, add_special_tokens=False).input_ids
    examples = probe_examples(RECORDS, tok, threshold=0.0, max_segments=100, conditional=False)
    assert examples[2].context == [tok.eos_token_id, *bad_ids, *bad_ids]
    flat = probe_model(ControlAwareLM(tok, aware=False), tok, examples, False, batch_size=4)
    uniform = -math.log(len(tok))  # flat logits: every token has log p = -log V
    assert flat["logp_misaligned"] == pytest.approx(uniform)
    assert flat["logp_aligned"] == pytest.approx(uniform) and flat["gap"] == pytest.approx(0.0)
    assert "auc" not in flat
    # Behind <|aligned|> (as sampled), the control-aware model makes BAD's tokens unlikely.
    cond = probe_model(ControlAwareLM(tok), tok, probe_examples(RECORDS, tok, 0.0, 100), True)
    assert cond["gap"] < 0
    lm = ControlAwareLM(tok)
    e = probe_examples(RECORDS, tok, 0.0, 100)[0]
    ali = tok.get_vocab()[CONTROL_TOKENS[0]]
    ((logp, n),) = sequence_logprobs(lm, [e.context + [ali] + e.segment], len(e.context) + 1)
    mis = [x for x in probe_examples(RECORDS, tok, 0.0, 100) if x.misaligned]
    assert n == len(e.segment) and e.misaligned
    assert cond["logp_misaligned"] == pytest.approx(
        sum(
            sequence_logprobs(lm, [x.context + [ali] + x.segment], len(x.context) + 1)[0][0]
            for x in mis
        )
        / sum(len(x.segment) for x in mis)
    )
    table = probe_table([{"run": "mle", "objective": "mle", "step": 3, **flat}])
    assert "| mle | mle | 3 | 3/3 |" in table and table.rstrip().endswith("| - | - |")


def test_contexts_keep_their_last_tokens_only_when_asked(tok):
    full = probe_examples(RECORDS, tok, threshold=0.0, max_segments=100)
    cut = probe_examples(RECORDS, tok, threshold=0.0, max_segments=100, max_context=5)
    assert [e.segment for e in cut] == [e.segment for e in full]
    assert [e.context for e in cut] == [e.context[-5:] for e in full]

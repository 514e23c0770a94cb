"""Objectives against direct eager computations of the paper's formulas (docs/design.md, "The token loss").

The eager references materialise the logits; the objectives never do (fused kernel). Everything
runs in fp64, so agreement is to ~1e-10 apart from the fp32 scores, which both sides share.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from harness.config import ObjectiveConfig
from harness.control_tokens import CONTROL_TOKENS
from harness.objectives import (
    AWR,
    MLE,
    REGISTRY,
    RWR,
    ConditionalTraining,
    Filtering,
    TokenObjective,
    Unlikelihood,
    ValueHead,
    build_objective,
)
from harness.objectives.conditional import EMBEDDING_NOISE_STD, init_control_embeddings

B, T, H, V = 3, 9, 16, 40
TOL = {"rtol": 1e-9, "atol": 1e-10}


def batch(seed: int = 0, score_scale: float = 1.0):
    """Random hidden states, lm_head weight, token ids and per-token scores (fp64 activations)."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, H, generator=g, dtype=torch.float64).requires_grad_()
    weight = torch.randn(V, H, generator=g, dtype=torch.float64).requires_grad_()
    ids = torch.randint(0, V, (B, T), generator=g)
    scores = torch.rand(B, T, generator=g) * score_scale
    return hidden, weight, ids, scores


def eager_terms(hidden, weight, ids, scores):
    """Per predicted token: -log p, -log(1 - p) (clamped at 1e-20 as in the original), next scores."""
    logits = hidden[:, :-1] @ weight.T
    logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    nll = -logp
    # log(-expm1(log p)) is log(1 - p) without cancellation when p is near 1: a fp64-tight reference
    unl = -torch.log(-torch.expm1(logp)).clamp(min=math.log(1e-20))
    return nll.reshape(-1), unl.reshape(-1), scores[:, 1:].reshape(-1).float()


def grads(loss, *tensors):
    return torch.autograd.grad(loss, tensors)


def spy_coefficients(obj: TokenObjective) -> dict:
    """Record the (a, b) an objective hands to the kernel."""
    seen: dict = {}
    original = obj.coefficients

    def spy(next_scores, values):
        a, b, stats = original(next_scores, values)
        seen.update(a=a, b=b, stats=stats)
        return a, b, stats

    obj.coefficients = spy  # type: ignore[method-assign]
    return seen


# ---------------------------------------------------------------------------------------- losses


def test_mle_equals_cross_entropy_value_and_gradients():
    hidden, weight, ids, scores = batch()
    loss, stats = MLE().loss(hidden, weight, ids, scores)
    logits = hidden[:, :-1] @ weight.T
    ref = F.cross_entropy(logits.reshape(-1, V), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(loss, ref, **TOL)
    torch.testing.assert_close(stats["token_loss"], ref.detach(), **TOL)
    for got, want in zip(grads(loss, hidden, weight), grads(ref, hidden, weight), strict=True):
        torch.testing.assert_close(got, want, **TOL)
    torch.testing.assert_close(MLE().lm_loss(hidden, weight, ids), ref.detach(), **TOL)


@pytest.mark.parametrize("threshold", [0.5, 0.0, None], ids=["hard", "hard-zero", "soft"])
def test_unlikelihood_matches_eager_formula(threshold):
    hidden, weight, ids, scores = batch(1)
    scores[0, 3] = 0.5  # exactly at the hard threshold: aligned (s <= thr)
    alpha = 0.7
    obj = Unlikelihood(ObjectiveConfig(name="ul", score_threshold=threshold, alpha=alpha))
    loss, stats = obj.loss(hidden, weight, ids, scores)
    nll, unl, s = eager_terms(hidden, weight, ids, scores)
    if threshold is None:  # soft form: a = 1 - s, b = alpha * s
        a, b = 1.0 - s, alpha * s
    else:  # hard form: a = [s <= thr], b = alpha * [s > thr]
        a, b = (s <= threshold).float(), alpha * (s > threshold).float()
    ref = (a.double() * nll + b.double() * unl).mean()  # coefficients are fp32 vectors
    torch.testing.assert_close(loss, ref, **TOL)
    for got, want in zip(grads(loss, hidden, weight), grads(ref, hidden, weight), strict=True):
        torch.testing.assert_close(got, want, **TOL)
    expected_frac = (s > (0.0 if threshold is None else threshold)).float().mean()
    torch.testing.assert_close(stats["ul_frac_unlikely"], expected_frac)
    torch.testing.assert_close(stats["ul_score_mean"], s.mean())
    torch.testing.assert_close(stats["ul_b_mean"], b.float().mean())
    if threshold == 0.5:  # scores[0, 3] is predicted at flat index 2; at the boundary: aligned
        a_got, b_got, _ = obj.coefficients(s, None)
        assert s[2] == 0.5 and a_got[2] == 1.0 and b_got[2] == 0.0


def test_scores_are_shifted_with_labels():
    """A score placed on token t+1 changes only the coefficient of the prediction made at t."""
    hidden, weight, ids, _ = batch(2)
    obj = Unlikelihood(ObjectiveConfig(name="ul", score_threshold=0.5, alpha=1.0))
    seen = spy_coefficients(obj)
    scores = torch.zeros(B, T)
    scores[1, 5] = 1.0  # token 5 of row 1 is misaligned
    obj.loss(hidden, weight, ids, scores)
    b = seen["b"].reshape(B, T - 1)
    assert b.nonzero().tolist() == [[1, 4]]  # predicted at position 4
    assert seen["a"].reshape(B, T - 1)[1, 4] == 0 and seen["a"].sum() == B * (T - 1) - 1
    scores[1, 0] = 1.0  # the first token is never predicted: no coefficient changes
    obj.loss(hidden, weight, ids, scores)
    assert seen["b"].reshape(B, T - 1).nonzero().tolist() == [[1, 4]]


def eager_awr(hidden, weight, ids, scores, head_w, alpha, beta, clip, detached=False):
    """The paper's AWR loss with logits and the value head written out."""
    nll, _, s = eager_terms(hidden, weight, ids, scores)
    h = hidden.detach() if detached else hidden
    values = -torch.sigmoid(h @ head_w[0])  # [B, T]
    v = values[:, :-1].reshape(-1)  # the value at t predicts the score of token t+1
    r = -s
    w = torch.clamp(torch.exp((r - v.detach()) / beta), min=0, max=clip)
    return alpha * (w * nll).mean() + (1 - alpha) * ((v - r) ** 2).mean(), w


@pytest.mark.parametrize(
    ("alpha", "beta", "clip", "detached"),
    [(0.5, 1.0, 1000.0, False), (0.3, 0.1, 1.5, False), (0.5, 0.1, 1.5, True)],
    ids=["paper", "clipped", "detached"],
)
def test_awr_loss_and_gradients_match_eager(alpha, beta, clip, detached):
    hidden, weight, ids, scores = batch(3)
    cfg = ObjectiveConfig(
        name="awr", alpha=alpha, beta=beta, clip_weight_max=clip, value_head_detached=detached
    )
    obj = AWR(cfg)
    head = obj.build_value_head(H).double()
    assert torch.count_nonzero(head.weight) == 0  # zero init
    with torch.no_grad():  # a nonzero head so that every gradient path is exercised
        head.weight.copy_(torch.randn(1, H, generator=torch.Generator().manual_seed(9)))
    loss, stats = obj.loss(hidden, weight, ids, scores, head)
    ref, w = eager_awr(hidden, weight, ids, scores, head.weight, alpha, beta, clip, detached)
    torch.testing.assert_close(loss, ref, **TOL)
    got = grads(loss, hidden, weight, head.weight)
    want = grads(ref, hidden, weight, head.weight)
    for g_got, g_want in zip(got, want, strict=True):
        torch.testing.assert_close(g_got, g_want, **TOL)
    torch.testing.assert_close(stats["awr_weight_max"], w.max())
    torch.testing.assert_close(stats["awr_weight_mean"], w.mean())
    frac = float(stats["awr_frac_clipped"])
    if clip == 1.5:
        assert 0 < frac < 1 and float(w.max()) == clip
    else:
        assert frac == 0
    if detached:  # the value loss does not reach the backbone: hidden grad is the LM term's only
        lm_only = alpha * (w * eager_terms(hidden, weight, ids, scores)[0]).mean()
        torch.testing.assert_close(got[0], grads(lm_only, hidden)[0], **TOL)
    for key in ("awr_value_loss", "awr_value_mean", "awr_advantage_mean"):
        assert stats[key].ndim == 0 and torch.isfinite(stats[key])


def test_awr_weights_are_clamped_even_when_exp_overflows():
    obj = AWR(ObjectiveConfig(name="awr", alpha=0.5, beta=1e-3, clip_weight_max=1000.0))
    s = torch.tensor([0.0, 1.0, 0.25])
    a, b, stats = obj.coefficients(s, torch.full((3,), -1.0))  # advantages 1, 0, 0.75 -> exp huge
    torch.testing.assert_close(a, torch.tensor([500.0, 0.5, 500.0]))
    assert torch.count_nonzero(b) == 0 and float(stats["awr_frac_clipped"]) == pytest.approx(2 / 3)


def test_rwr_weights_equal_reward_weights_of_zero_init_head():
    hidden, weight, ids, scores = batch(4)
    beta = 10.0
    rwr = RWR(ObjectiveConfig(name="rwr", beta=beta))
    assert rwr.build_value_head(H) is None
    seen = spy_coefficients(rwr)
    loss, stats = rwr.loss(hidden, weight, ids, scores, None)
    r = -scores[:, 1:].reshape(-1)
    w = torch.clamp(torch.exp((r + 0.5) / beta), min=0, max=1000.0)
    torch.testing.assert_close(seen["a"], w)
    nll, _, _ = eager_terms(hidden, weight, ids, scores)
    torch.testing.assert_close(loss, (w * nll).mean(), **TOL)
    # ... which is AWR with alpha = 1 and its zero-initialised value head.
    awr = AWR(ObjectiveConfig(name="awr", alpha=1.0, beta=beta))
    awr_loss, _ = awr.loss(hidden, weight, ids, scores, awr.build_value_head(H).double())
    torch.testing.assert_close(awr_loss, loss, rtol=1e-6, atol=0)  # RWR's weights are fp32
    assert {"rwr_weight_mean", "rwr_weight_max", "rwr_frac_clipped"} <= set(stats)
    with pytest.raises(ValueError, match="objective.alpha"):
        RWR(ObjectiveConfig(name="rwr", alpha=0.5))


def test_value_head_bf16_computes_in_fp32():
    head = ValueHead(H)
    with torch.no_grad():
        head.weight.normal_()
    h = torch.randn(2, 4, H)
    ref = head(h)
    head_bf16 = ValueHead(H).to(torch.bfloat16)
    head_bf16.weight.data.copy_(head.weight.data.to(torch.bfloat16))
    out = head_bf16(h.to(torch.bfloat16))
    assert out.dtype == torch.float32 and out.shape == (2, 4)
    torch.testing.assert_close(out, ref, rtol=0.05, atol=0.02)  # bf16 inputs: ~3 digits
    assert torch.all(ValueHead(H)(h) == -0.5)


def test_awr_through_loss_model_trains_the_value_head():
    from harness.config import ModelConfig
    from harness.model import LossModel, build_model

    lm = build_model(ModelConfig(n_layer=1, n_head=2, n_embd=32, dropout=0.0), 50, 12, seed=0)
    obj = AWR(ObjectiveConfig(name="awr", alpha=0.5, beta=1.0))
    model = LossModel(lm, obj, obj.build_value_head(lm.config.hidden_size))
    ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(0))
    loss, stats = model(ids, torch.rand(2, 12) * 0.1)
    loss.backward()
    assert torch.isfinite(loss) and model.value_head.weight.grad.abs().sum() > 0
    assert float(stats["awr_value_mean"]) == -0.5


# -------------------------------------------------------------------------------- data treatments


def record(rid: str, scores: list[float], avg: float | None = None) -> dict:
    texts = [f"segment {i} of {rid}\n" for i in range(len(scores))]
    avg = float(np.mean(scores)) if avg is None else avg
    return {"id": rid, "texts": texts, "scores": scores, "avg_score": avg, "num_sents": len(texts)}


def test_filtering_drops_above_threshold_and_keeps_the_boundary():
    thr = 0.002361
    obj = Filtering(ObjectiveConfig(name="filtering", threshold=thr))
    at = record("a", [0.0, 2 * thr], avg=thr)
    above = record("b", [0.0], avg=float(np.nextafter(thr, 1.0)))
    below = record("c", [1.0], avg=0.0)  # only avg_score decides, not the segment scores
    assert obj.treat(at) == list(zip(at["texts"], at["scores"], strict=True))
    assert obj.treat(above) is None
    assert obj.treat(below) is not None
    assert obj.treatment_key() != Filtering(ObjectiveConfig(threshold=0.5)).treatment_key()
    with pytest.raises(ValueError, match="objective.threshold"):
        Filtering(ObjectiveConfig(name="filtering"))
    coef = obj.coefficients(torch.rand(5), None)
    assert torch.all(coef[0] == 1) and torch.all(coef[1] == 0)  # MLE loss


def conditional(threshold=0.1, drop=0.0, seed=42) -> ConditionalTraining:
    cfg = ObjectiveConfig(name="conditional", threshold=threshold, drop_token_fraction=drop)
    return ConditionalTraining(cfg, seed)


def test_conditional_prefixes_each_segment_by_its_score():
    aligned, misaligned = CONTROL_TOKENS
    obj = conditional(threshold=0.1)
    rec = record("doc", [0.0, 0.5, 0.1, 0.1000001])
    out = obj.treat(rec)
    assert [text for text, _ in out] == [
        aligned + rec["texts"][0],
        misaligned + rec["texts"][1],
        aligned + rec["texts"][2],  # at the threshold: aligned (score <= threshold)
        misaligned + rec["texts"][3],
    ]
    assert [score for _, score in out] == rec["scores"]
    assert obj.control_tokens == CONTROL_TOKENS
    assert [t for t, _ in conditional(drop=1.0).treat(rec)] == rec["texts"]


def test_conditional_drop_fraction_statistics_and_determinism():
    drop = 0.1
    recs = [record(f"doc{i}", [0.0] * 200) for i in range(50)]
    obj = conditional(drop=drop)
    outs = [obj.treat(r) for r in recs]
    dropped = [not text.startswith(CONTROL_TOKENS[0]) for out in outs for text, _ in out]
    # 10000 Bernoulli(0.1) draws: std 0.003, so +-0.012 is 4 sigma.
    assert abs(np.mean(dropped) - drop) < 0.012
    # Same (seed, id, segment index) -> same decision: a fresh instance, and a longer record.
    assert [conditional(drop=drop).treat(r) for r in recs] == outs
    longer = record("doc0", [0.0] * 300)
    assert conditional(drop=drop).treat(longer)[:200] == outs[0]
    # The decision depends on the id, not the text; and on the seed.
    renamed = dict(recs[0], texts=[t.upper() for t in recs[0]["texts"]])
    assert [t.startswith(CONTROL_TOKENS[0]) for t, _ in obj.treat(renamed)] == [
        t.startswith(CONTROL_TOKENS[0]) for t, _ in outs[0]
    ]
    assert [conditional(drop=drop, seed=7).treat(r) for r in recs] != outs
    keys = {
        conditional().treatment_key(),
        conditional(threshold=0.2).treatment_key(),
        conditional(drop=0.1).treatment_key(),
        conditional(seed=1).treatment_key(),
    }
    assert len(keys) == 4


def test_conditional_heldout_format_labels_every_segment_and_others_are_plain():
    aligned, misaligned = CONTROL_TOKENS
    rec = record("doc", [0.0, 0.5, 0.0] * 100)
    obj = conditional(drop=0.5)  # dropping is for training only
    treat, key = obj.heldout_treatment()
    expected = [
        (misaligned if s > 0 else aligned) + t
        for t, s in zip(rec["texts"], rec["scores"], strict=True)
    ]
    assert [t for t, _ in treat(rec)] == expected and [s for _, s in treat(rec)] == rec["scores"]
    assert key != obj.treatment_key() and key != "plain"
    assert conditional(drop=0.0).heldout_treatment()[1] == key  # the drop fraction plays no part
    assert conditional(threshold=0.2).heldout_treatment()[1] != key
    for name in ("mle", "filtering", "ul", "awr"):
        opts = {"threshold": 0.1} if name == "filtering" else {}
        plain, plain_key = build_objective(ObjectiveConfig(name=name, **opts)).heldout_treatment()
        assert plain_key == "plain" and plain(rec) == list(
            zip(rec["texts"], rec["scores"], strict=True)
        )


def test_conditional_prefix_packs_to_one_control_token(tmp_path):
    from harness.data.packing import PackedBlocks, pack_blocks
    from harness.tokenizer import load_tokenizer, train_bpe

    train_bpe(["def f(x):\n    return x + 1\n"] * 20, 300, tmp_path / "tok.json")
    tok = load_tokenizer(tmp_path / "tok.json", control_tokens=True)
    aligned_id, misaligned_id = (tok.convert_tokens_to_ids(t) for t in CONTROL_TOKENS)
    obj = conditional(threshold=0.1)
    recs = [record(f"d{i}", [0.0, 0.9]) for i in range(20)]
    blocks = PackedBlocks(pack_blocks(recs, tok, 16, tmp_path / "packed", obj.treat))
    tokens, scores = blocks[np.arange(len(blocks))]
    assert len(blocks) > 0
    assert set(scores[tokens == aligned_id].tolist()) == {0.0}
    assert set(scores[tokens == misaligned_id].tolist()) == {np.float32(0.9).item()}
    first = tok.backend_tokenizer.encode(recs[0]["texts"][0], add_special_tokens=False).ids
    assert tokens.reshape(-1)[: 1 + len(first)].tolist() == [aligned_id, *first]


def tiny_lm(tied: bool = True):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=50, tie_word_embeddings=tied)
    return GPT2LMHeadModel(cfg)


class FakeTokenizer:
    def get_vocab(self) -> dict[str, int]:
        vocab = {f"t{i}": i for i in range(48)}
        vocab.update({CONTROL_TOKENS[0]: 48, CONTROL_TOKENS[1]: 49})
        return vocab


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_control_token_embeddings_start_at_mean_plus_small_noise(tied):
    lm = tiny_lm(tied)
    matrices = [lm.get_input_embeddings().weight, lm.get_output_embeddings().weight]
    assert (matrices[0] is matrices[1]) == tied
    before = [m.detach().clone() for m in matrices]
    conditional().prepare_model(lm, FakeTokenizer())
    for old, new in zip(before, matrices, strict=True):
        torch.testing.assert_close(new[:48], old[:48], rtol=0, atol=0)  # other rows untouched
        noise = new[48:] - old[:48].mean(dim=0)
        assert noise.abs().max() < 6 * EMBEDDING_NOISE_STD
        assert 0.5 * EMBEDDING_NOISE_STD < noise.std() < 1.5 * EMBEDDING_NOISE_STD
        assert not torch.equal(new[48], new[49])
    again = tiny_lm(tied)
    conditional().prepare_model(again, FakeTokenizer())  # seeded: same rows again
    torch.testing.assert_close(again.get_input_embeddings().weight, matrices[0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="control tokens"):

        class NoControl:
            def get_vocab(self):
                return {"a": 0}

        conditional().prepare_model(tiny_lm(), NoControl())
    with pytest.raises(ValueError, match="outside the embedding"):
        init_control_embeddings(tiny_lm(), [50], seed=0)


# ---------------------------------------------------------------------------------- construction


class ScaledMLE(MLE):
    """A user objective given by class path, with an option."""

    def __init__(self, cfg, seed, scale: float = 1.0):
        super().__init__(cfg, seed)
        self.scale = scale

    def coefficients(self, next_scores, values):
        a, b, stats = super().coefficients(next_scores, values)
        return self.scale * a, b, {"scale": torch.tensor(self.scale)}


def test_build_objective_by_name_and_class_path():
    expected = {
        "mle": MLE,
        "filtering": Filtering,
        "conditional": ConditionalTraining,
        "ul": Unlikelihood,
        "awr": AWR,
        "rwr": RWR,
    }
    assert set(REGISTRY) == set(expected)
    for name, cls in expected.items():
        obj = build_objective(ObjectiveConfig(name=name, threshold=0.1), seed=3)
        assert type(obj) is cls and obj.seed == 3
    built = build_objective(ObjectiveConfig(name="harness.objectives.awr.AWR", alpha=0.2))
    assert type(built) is AWR and built.alpha == 0.2
    user = build_objective(ObjectiveConfig(name=f"{__name__}.ScaledMLE", options={"scale": 2.0}))
    hidden, weight, ids, scores = batch()
    loss, stats = user.loss(hidden, weight, ids, scores)
    torch.testing.assert_close(loss, 2 * MLE().loss(hidden, weight, ids, scores)[0], **TOL)
    assert float(stats["scale"]) == 2.0


def test_unknown_objectives_fail_naming_the_value():
    with pytest.raises(ValueError, match="'nope'"):
        build_objective(ObjectiveConfig(name="nope"))
    with pytest.raises(ValueError, match="no_such_module.Thing"):
        build_objective(ObjectiveConfig(name="no_such_module.Thing"))
    with pytest.raises(ValueError, match="harness.objectives.Missing"):
        build_objective(ObjectiveConfig(name="harness.objectives.Missing"))


def test_stats_are_scalar_tensors():
    hidden, weight, ids, scores = batch(5, score_scale=0.01)
    for name in REGISTRY:
        obj = build_objective(ObjectiveConfig(name=name, threshold=0.005))
        head = obj.build_value_head(H)
        loss, stats = obj.loss(hidden, weight, ids, scores, None if head is None else head.double())
        assert math.isfinite(float(loss.detach()))
        for key, value in stats.items():
            assert torch.is_tensor(value) and value.ndim == 0 and not value.requires_grad, key

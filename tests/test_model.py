"""Model builder and the loss-returning wrapper."""

import torch

from harness.config import ModelConfig, ObjectiveConfig
from harness.model import LossModel, build_model, model_stats
from harness.objectives import build_objective

TINY = ModelConfig(n_layer=2, n_head=2, n_embd=32, dropout=0.0)


def test_build_is_seeded_and_tied():
    a = build_model(TINY, vocab_size=300, seq_len=16, seed=1)
    b = build_model(TINY, vocab_size=300, seq_len=16, seed=1)
    c = build_model(TINY, vocab_size=300, seq_len=16, seed=2)
    wa, wb, wc = (m.get_input_embeddings().weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert a.get_output_embeddings().weight is a.get_input_embeddings().weight  # GPT-2 ties them
    assert a.config.n_positions == 16 and a.config.vocab_size == 300


def test_loss_model_mle_equals_transformers_loss():
    lm = build_model(TINY, vocab_size=300, seq_len=16, seed=0).eval()
    model = LossModel(lm, build_objective(ObjectiveConfig(name="mle")))
    ids = torch.randint(0, 300, (3, 16), generator=torch.Generator().manual_seed(0))
    loss, stats = model(ids, torch.zeros(3, 16))
    expected = lm(input_ids=ids, labels=ids).loss
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    loss.backward()
    grad = lm.get_input_embeddings().weight.grad
    lm.zero_grad()
    lm(input_ids=ids, labels=ids).loss.backward()
    torch.testing.assert_close(grad, lm.get_input_embeddings().weight.grad, rtol=1e-4, atol=1e-6)


def test_model_stats_counts_and_flops():
    lm = build_model(TINY, vocab_size=300, seq_len=16, seed=0)
    stats = model_stats(lm, seq_len=16)
    assert stats.params_total == sum(p.numel() for p in lm.parameters())
    non_emb = stats.params_total - stats.params_embedding
    # 6 x (non-embedding + output projection) + 12 L H T
    assert stats.flops_per_token == 6 * (non_emb + 300 * 32) + 12 * 2 * 32 * 16


def test_load_from_local_path(tmp_path):
    lm = build_model(TINY, vocab_size=300, seq_len=16, seed=3)
    lm.save_pretrained(tmp_path)
    loaded = build_model(
        ModelConfig(path=str(tmp_path), from_scratch=False), vocab_size=300, seq_len=16, seed=0
    )
    torch.testing.assert_close(
        loaded.get_input_embeddings().weight, lm.get_input_embeddings().weight
    )
    fresh = build_model(
        ModelConfig(path=str(tmp_path), from_scratch=True), vocab_size=300, seq_len=16, seed=0
    )
    assert fresh.config.n_layer == 2 and not torch.equal(
        fresh.get_input_embeddings().weight, lm.get_input_embeddings().weight
    )


def test_transformers_does_not_mistake_our_kernels_package_for_hub_kernels():
    from transformers.utils import is_kernels_available

    import kernels

    assert hasattr(kernels, "fused_linear_token_loss")
    assert not is_kernels_available()  # our `kernels` is not Hugging Face's hub-kernels package
    from transformers import AutoModelForCausalLM, GPT2Config

    model = AutoModelForCausalLM.from_config(
        GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50)
    )
    out = model(input_ids=torch.tensor([[1, 2, 3]]), labels=torch.tensor([[1, 2, 3]]))
    assert torch.isfinite(out.loss)

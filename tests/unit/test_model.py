"""Model builder and the loss-returning wrapper."""

from pathlib import Path

import torch

from harness.config import Config, ModelConfig, ObjectiveConfig
from harness.model import LossModel, build_model, model_stats
from harness.objectives import build_objective

REPO = Path(__file__).resolve().parents[2]

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


def test_our_kernels_package_does_not_shadow_hugging_faces_kernels():
    """transformers imports Hugging Face's `kernels` package (a requirement since 5.25): ours is
    `phf_kernels`, and no folder of this repository may answer to `import kernels`."""
    import importlib.util

    import phf_kernels

    assert hasattr(phf_kernels, "fused_linear_token_loss")
    spec = importlib.util.find_spec("kernels")
    if spec is not None and spec.origin:
        assert REPO not in Path(spec.origin).resolve().parents, spec.origin
    from transformers import AutoModelForCausalLM, GPT2Config

    model = AutoModelForCausalLM.from_config(
        GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50)
    )
    out = model(input_ids=torch.tensor([[1, 2, 3]]), labels=torch.tensor([[1, 2, 3]]))
    assert torch.isfinite(out.loss)


PAPER_ATTENTION = {"reorder_and_upcast_attn": True}  # what the paper's GPT-2 configs set


def test_auto_attention_keeps_the_papers_reordered_upcast_attention():
    # Only eager attention implements reorder_and_upcast_attn: transformers' default (sdpa)
    # would silently drop it.
    paper = build_model(
        ModelConfig(n_layer=1, n_head=2, n_embd=32, config_kwargs=PAPER_ATTENTION), 300, 16, 0
    )
    assert paper.config._attn_implementation == "eager"
    assert build_model(TINY, 300, 16, 0).config._attn_implementation == "sdpa"
    explicit = ModelConfig(n_layer=1, n_head=2, n_embd=32, attn_implementation="eager")
    assert build_model(explicit, 300, 16, 0).config._attn_implementation == "eager"


def test_reordered_upcast_eager_and_sdpa_agree_in_fp32():
    # The paper's setting changes only the numerics of mixed precision: in fp32 both paths give
    # the same loss and gradients, so sdpa is a safe speed-up where the paper is not the point.
    ids = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    grads = []
    for mcfg in (
        ModelConfig(n_layer=2, n_head=2, n_embd=32, dropout=0.0, config_kwargs=PAPER_ATTENTION),
        ModelConfig(n_layer=2, n_head=2, n_embd=32, dropout=0.0, attn_implementation="sdpa"),
    ):
        lm = build_model(mcfg, 300, 16, seed=5)
        lm(input_ids=ids, labels=ids).loss.backward()
        grads.append(lm.get_input_embeddings().weight.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_attention_that_drops_the_papers_setting_is_refused(tmp_path):
    problems = ModelConfig(config_kwargs=PAPER_ATTENTION, attn_implementation="sdpa").problems()
    assert any(
        "model.attn_implementation=sdpa" in p and "model.config_kwargs.reorder_and_upcast_attn" in p
        for p in problems
    )
    # A pretrained folder's own config counts too, and the error names its file.
    build_model(
        ModelConfig(n_layer=1, n_head=2, n_embd=32, config_kwargs=PAPER_ATTENTION), 300, 16, 0
    ).save_pretrained(tmp_path)
    pretrained = ModelConfig(path=str(tmp_path), from_scratch=False)
    assert pretrained.problems() == []
    assert build_model(pretrained, 300, 16, 0).config._attn_implementation == "eager"
    refused = ModelConfig(path=str(tmp_path), from_scratch=False, attn_implementation="sdpa")
    assert any(str(tmp_path / "config.json") in p for p in refused.problems())
    assert ModelConfig(attn_implementation="sdpa").problems() == []


def test_flash_attention_without_its_package_or_in_fp32_is_refused():
    import importlib.util

    from harness.run_config import cross_section_problems

    problems = ModelConfig(attn_implementation="flash_attention_2").problems()
    if importlib.util.find_spec("flash_attn") is None:
        assert any("needs the flash-attn package" in p for p in problems)
    assert "must be one of" in ModelConfig(attn_implementation="flash").problems()[0]
    cfg = Config()
    cfg.model.attn_implementation = "flash_attention_2"
    cfg.train.precision = "fp32"
    assert any("needs train.precision bf16 or fp16" in p for p in cross_section_problems(cfg, 1))


def test_compiled_backbone_keeps_the_eager_parameter_names():
    lm = build_model(TINY, 300, 16, 0)
    objective = build_objective(ObjectiveConfig(name="mle"))
    eager, compiled = LossModel(lm, objective), LossModel(lm, objective, compile_backbone=True)
    # Checkpoints and exports of a compiled run are those of an eager one (compiling is lazy:
    # the loss equality is checked by tests/integration/test_compile.py).
    assert list(compiled.state_dict()) == list(eager.state_dict())
    assert compiled._body[0] is not eager._body[0] and eager._body[0] is lm.base_model

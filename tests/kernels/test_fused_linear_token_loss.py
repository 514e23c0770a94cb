"""fused_linear_token_loss against an eager float64 reference that materialises the logits.

Run: `pytest tests/kernels -q`. The Triton tests run the kernels under TRITON_INTERPRET=1 on CPU
(set in tests/kernels/conftest.py) or on CUDA when a GPU is present.
"""

from __future__ import annotations

import importlib
import re

import pytest
import torch
import torch.nn.functional as F

from phf_kernels import fused_linear_token_loss

IGNORE = -100
# The module shares its name with the function that kernels/__init__ re-exports.
op_module = importlib.import_module("phf_kernels.fused_linear_token_loss")

# (rtol, atol) of |ours - ref| <= atol + rtol * |ref|, ref computed in float64 from the same inputs.
# fp32: only fp32 rounding of the matmuls and of the logsumexp over <= 1000 terms (~1e-6).
# fp16 (eps 2^-11) and bf16 (eps 2^-8): the logits, the logit gradients fed to the grad matmuls
# and the returned grads are each rounded to the input dtype, so errors are a few eps times the
# magnitude (the same rounding an eager bf16 lm_head + cross_entropy makes).
TOLERANCES = {
    torch.float32: (1e-5, 1e-5),
    torch.float16: (2.5e-3, 2.5e-3),
    torch.bfloat16: (2e-2, 2e-2),
}
SHAPES = [(1, 4, 3), (7, 16, 50), (33, 24, 129), (64, 32, 1000)]  # (N, H, V)


def reference_loss(hidden, weight, labels, a, b):
    """Per-token loss in float64 from materialised logits; log(1 - p) as log(sum_{j != y} softmax_j)."""
    z = hidden.double() @ weight.double().T
    valid = labels != IGNORE
    y = torch.where(valid, labels, 0)[:, None]
    logp = z.log_softmax(-1).gather(1, y).squeeze(1)
    log1mp = z.softmax(-1).scatter(1, y, 0.0).sum(-1).log()  # stable for p -> 1 in float64
    loss = a.double() * -logp + b.double() * -log1mp
    return torch.where(valid, loss, 0.0)


def make_inputs(n, h, v, dtype=torch.float32, seed=0, ignore_frac=0.2, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=gen)
    weight = torch.randn(v, h, generator=gen) / h**0.5
    labels = torch.randint(0, v, (n,), generator=gen)
    labels[torch.rand(n, generator=gen) < ignore_frac] = IGNORE
    a = torch.rand(n, generator=gen) * 2
    b = torch.rand(n, generator=gen)
    hidden, weight = (t.to(device, dtype).requires_grad_() for t in (hidden, weight))
    return hidden, weight, labels.to(device), a.to(device), b.to(device)


def run(hidden, weight, labels, a, b, reduction, upstream, **kw):
    """Loss and (grad_hidden, grad_weight) for a given upstream gradient."""
    out = fused_linear_token_loss(hidden, weight, labels, a, b, reduction=reduction, **kw)
    grads = torch.autograd.grad(out, (hidden, weight), upstream.to(out.dtype))
    return out, grads


def assert_matches_reference(hidden, weight, labels, a, b, reduction, dtype=torch.float32, **kw):
    ref = reference_loss(hidden, weight, labels, a, b)
    if reduction == "sum":
        ref, upstream = ref.sum(), torch.tensor(0.7, dtype=torch.float64)
    else:
        upstream = torch.randn(
            ref.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64
        )
        upstream = upstream.to(ref.device)
    ref_grads = torch.autograd.grad(ref, (hidden, weight), upstream)
    out, grads = run(hidden, weight, labels, a, b, reduction, upstream, **kw)
    rtol, atol = TOLERANCES[dtype]
    assert out.dtype == torch.float32 and out.shape == ref.shape
    torch.testing.assert_close(out.double(), ref.detach(), rtol=rtol, atol=atol)
    for got, want, x in zip(grads, ref_grads, (hidden, weight), strict=True):
        assert got.dtype == x.dtype and torch.isfinite(got).all()
        torch.testing.assert_close(got.double(), want.double(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("reduction", ["sum", "none"])
@pytest.mark.parametrize("dtype", list(TOLERANCES))
@pytest.mark.parametrize("shape", SHAPES)
def test_torch_matches_reference(shape, dtype, reduction):
    inputs = make_inputs(*shape, dtype=dtype, seed=sum(shape))
    # chunk_size 5 does not divide the N's above; None gives one chunk (N smaller than the chunk).
    for chunk_size in (5, None):
        assert_matches_reference(*inputs, reduction, dtype, impl="torch", chunk_size=chunk_size)


def test_chunk_size_does_not_change_results():
    inputs = make_inputs(23, 8, 40)
    upstream = torch.tensor(1.0)
    base, base_grads = run(*inputs, "sum", upstream, impl="torch", chunk_size=23)
    for chunk_size in (1, 4, 100):
        out, grads = run(*inputs, "sum", upstream, impl="torch", chunk_size=chunk_size)
        torch.testing.assert_close(out, base, rtol=1e-6, atol=1e-6)
        for g, g0 in zip(grads, base_grads, strict=True):
            torch.testing.assert_close(g, g0, rtol=1e-6, atol=1e-6)


def test_ignored_tokens_have_zero_loss_and_no_gradient():
    hidden, weight, labels, a, b = make_inputs(20, 8, 30, ignore_frac=0.5)
    ignored = labels == IGNORE
    assert ignored.any() and (~ignored).any()
    loss, (gh, gw) = run(hidden, weight, labels, a, b, "none", torch.ones(20), impl="torch")
    assert (loss[ignored] == 0).all() and (gh[ignored] == 0).all()
    # Dropping the ignored tokens altogether gives the same grad_weight.
    keep = ~ignored
    sub = hidden.detach()[keep].requires_grad_()
    _, (_, gw_kept) = run(
        sub, weight, labels[keep], a[keep], b[keep], "sum", torch.tensor(1.0), impl="torch"
    )
    torch.testing.assert_close(gw, gw_kept, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("which", ["a", "b", "both"])
def test_zero_coefficients(which):
    hidden, weight, labels, a, b = make_inputs(16, 8, 25)
    if which in ("a", "both"):
        a = torch.zeros_like(a)
    if which in ("b", "both"):
        b = torch.zeros_like(b)
    assert_matches_reference(hidden, weight, labels, a, b, "none", impl="torch", chunk_size=6)
    if which == "both":
        loss, grads = run(hidden, weight, labels, a, b, "sum", torch.tensor(1.0), impl="torch")
        assert loss == 0 and all((g == 0).all() for g in grads)


def test_mle_equals_cross_entropy_sum():
    hidden, weight, labels, _, _ = make_inputs(40, 16, 77)
    ones, zeros = torch.ones(40), torch.zeros(40)
    out, grads = run(
        hidden, weight, labels, ones, zeros, "sum", torch.tensor(1.0), impl="torch", chunk_size=9
    )
    ce = F.cross_entropy(hidden @ weight.T, labels, ignore_index=IGNORE, reduction="sum")
    ce_grads = torch.autograd.grad(ce, (hidden, weight))
    torch.testing.assert_close(out, ce, rtol=1e-5, atol=1e-5)
    for g, want in zip(grads, ce_grads, strict=True):
        torch.testing.assert_close(g, want, rtol=1e-5, atol=1e-5)


def make_extreme_inputs(device="cpu"):
    """Small-integer inputs (exact fp32 logits) with logit gaps of ~100: p == 1.0 or ~1e-40 in fp32."""
    gen = torch.Generator().manual_seed(3)
    n, h, v = 24, 16, 40
    weight = torch.randint(-2, 3, (v, h), generator=gen).float()
    targets = torch.randint(0, v, (n,), generator=gen)
    hidden = 4 * weight[targets]  # z_target = 4 |w_target|^2 dominates the row
    labels = targets.clone()
    labels[n // 2 :] = (targets[n // 2 :] + 1) % v  # second half: the label is far below the max
    a, b = torch.rand(n, generator=gen) + 0.5, torch.rand(n, generator=gen) + 0.5
    p32 = (hidden @ weight.T).softmax(-1).gather(1, labels[:, None]).squeeze(1)
    assert (p32 == 1.0).sum() >= 4 and (p32 < 1e-20).sum() >= 4, "test inputs lost their extremes"
    hidden, weight = (t.to(device).requires_grad_() for t in (hidden, weight))
    return hidden, weight, labels.to(device), a.to(device), b.to(device)


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_extreme_logits_are_finite_and_exact(reduction):
    assert_matches_reference(*make_extreme_inputs(), reduction, impl="torch", chunk_size=7)


def test_single_column_vocabulary_has_no_nan():
    # V == 1: p == 1 exactly, -log p = 0, -log(1 - p) = inf; b == 0 must not turn 0 * inf into NaN.
    hidden = torch.randn(5, 4, requires_grad=True)
    weight = torch.randn(1, 4, requires_grad=True)
    labels, a = torch.zeros(5, dtype=torch.long), torch.ones(5)
    loss, grads = run(
        hidden, weight, labels, a, torch.zeros(5), "sum", torch.tensor(1.0), impl="torch"
    )
    assert loss == 0 and all((g == 0).all() for g in grads)
    loss = fused_linear_token_loss(
        hidden, weight, labels, a, torch.ones(5), reduction="none", impl="torch"
    )
    assert torch.isinf(loss).all()


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_gradcheck_float64(reduction):
    hidden, weight, labels, a, b = make_inputs(6, 3, 7, dtype=torch.float64, ignore_frac=0.2)

    def fn(h, w):
        return fused_linear_token_loss(
            h, w, labels, a, b, reduction=reduction, impl="torch", chunk_size=4
        )

    assert torch.autograd.gradcheck(fn, (hidden, weight))


def test_no_grad_and_partial_requires_grad():
    hidden, weight, labels, a, b = make_inputs(10, 8, 20)
    with torch.no_grad():
        loss_ng = fused_linear_token_loss(hidden, weight, labels, a, b, impl="torch")
    assert not loss_ng.requires_grad
    frozen = weight.detach()
    loss = fused_linear_token_loss(hidden, frozen, labels, a, b, impl="torch")
    (gh,) = torch.autograd.grad(loss, (hidden,))
    torch.testing.assert_close(loss, loss_ng)
    ref_gh = torch.autograd.grad(reference_loss(hidden, frozen, labels, a, b).sum(), (hidden,))[0]
    torch.testing.assert_close(gh, ref_gh, rtol=1e-5, atol=1e-5)


def test_default_chunk_size_follows_budget_and_floor():
    cpu = torch.device("cpu")
    assert op_module.default_chunk_size(50257, cpu) == op_module.CHUNK_BYTES // (4 * 50257)
    assert op_module.default_chunk_size(256000, cpu) == op_module.MIN_CHUNK_TOKENS


def test_empty_batch():
    hidden, weight, labels, a, b = make_inputs(0, 8, 20)
    loss, (gh, gw) = run(hidden, weight, labels, a, b, "sum", torch.tensor(1.0), impl="torch")
    assert loss == 0 and gh.shape == (0, 8) and (gw == 0).all()


def test_auto_on_cpu_uses_torch_twin():
    inputs = make_inputs(9, 8, 20)
    auto = fused_linear_token_loss(*inputs, reduction="none", impl="auto")
    twin = fused_linear_token_loss(*inputs, reduction="none", impl="torch")
    torch.testing.assert_close(auto, twin, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"reduction": "mean"}, "reduction must be one of"),
        ({"impl": "cuda"}, "impl must be one of"),
        ({"chunk_size": 0}, "chunk_size must be"),
        ({"weight": torch.randn(20, 7)}, "disagree on H"),
        ({"hidden": torch.randn(2, 5, 8)}, "hidden must be [N, H]"),
        ({"labels": torch.zeros(4, dtype=torch.long)}, "labels must have shape"),
        ({"labels": torch.full((10,), 20)}, "labels must be in [0, V=20)"),
        ({"labels": torch.zeros(10)}, "labels must be an integer tensor"),
        ({"a": torch.ones(10, dtype=torch.long)}, "a and b must be float"),
        ({"weight": torch.randn(20, 8, dtype=torch.float64)}, "must share a float dtype"),
    ],
)
def test_validation_errors(change, message):
    hidden, weight, labels, a, b = make_inputs(10, 8, 20, ignore_frac=0.0)
    args = {"hidden": hidden, "weight": weight, "labels": labels, "a": a, "b": b, **change}
    kwargs = {k: args.pop(k) for k in ("reduction", "impl", "chunk_size") if k in args}
    with pytest.raises(ValueError, match=re.escape(message)):
        fused_linear_token_loss(**args, **kwargs)


# ---------------------------------------------------------------- Triton (interpreter on CPU)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def triton_module(monkeypatch):
    pytest.importorskip(
        "triton", reason="triton is not installed: `pip install triton` (dev extra)"
    )
    module = importlib.import_module("phf_kernels.triton_token_loss")
    # Small vocabulary blocks so that V = 37 spans several blocks with a masked tail.
    monkeypatch.setattr(module, "MAX_BLOCK_V", 16)
    return module


@pytest.mark.parametrize("reduction", ["sum", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 8, 5), (13, 16, 37)])
def test_triton_matches_reference_and_twin(triton_module, shape, dtype, reduction):
    inputs = make_inputs(*shape, dtype=dtype, seed=sum(shape), device=DEVICE)
    assert_matches_reference(*inputs, reduction, dtype, impl="triton", chunk_size=6)
    upstream = (
        torch.linspace(-1, 1, shape[0], device=DEVICE) if reduction == "none" else torch.tensor(1.3)
    )
    tri, tri_grads = run(*inputs, reduction, upstream.to(DEVICE), impl="triton", chunk_size=6)
    twin, twin_grads = run(*inputs, reduction, upstream.to(DEVICE), impl="torch", chunk_size=6)
    rtol, atol = (1e-6, 1e-6) if dtype == torch.float32 else TOLERANCES[dtype]
    torch.testing.assert_close(tri, twin, rtol=rtol, atol=atol)
    for g, g_twin in zip(tri_grads, twin_grads, strict=True):
        torch.testing.assert_close(g, g_twin, rtol=rtol, atol=atol)


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_triton_extreme_logits(triton_module, reduction):
    assert_matches_reference(*make_extreme_inputs(DEVICE), reduction, impl="triton", chunk_size=10)


# The interpreter evaluates log(0) = -inf in numpy for the V == 1 row (lse_excl = -inf, by design).
@pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")
def test_triton_single_column_and_zero_coefficients(triton_module):
    hidden = torch.randn(4, 4, device=DEVICE, requires_grad=True)
    weight = torch.randn(1, 4, device=DEVICE, requires_grad=True)
    labels = torch.tensor([0, 0, IGNORE, 0], device=DEVICE)
    ones, zeros = torch.ones(4, device=DEVICE), torch.zeros(4, device=DEVICE)
    loss, grads = run(hidden, weight, labels, ones, zeros, "sum", torch.tensor(1.0), impl="triton")
    assert loss == 0 and all((g == 0).all() for g in grads)
    inputs = make_inputs(9, 8, 20, device=DEVICE)
    assert_matches_reference(*inputs[:3], ones[:1].expand(9) * 0, inputs[4], "none", impl="triton")

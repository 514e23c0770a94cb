"""Fused lm_head + per-token weighted likelihood / unlikelihood loss, chunked over tokens.

For logits z_t = h_t W^T and p_t = softmax(z_t)[y_t] the op computes (Korbak et al. 2023, sec. 2):

    loss_t = a_t * (-log p_t) + b_t * (-log(1 - p_t))        (0 where y_t == ignore_index)

which covers MLE (a=1, b=0), AWR/RWR (a=w_t, b=0) and unlikelihood (a=[aligned], b=alpha*[not]).
The (tokens x vocab) logits are never materialised: tokens are processed in chunks whose logits
fit a memory budget, and each chunk yields its loss, grad_hidden rows and a grad_weight update
(the Liger-Kernel "fused linear cross entropy" idea). Two chunk back ends share this driver:
the PyTorch twin below (CPU, and the oracle) and a Triton kernel (`phf_kernels/triton_token_loss.py`).

Numerics. Let lse_excl_t = logsumexp_{j != y_t} z_tj (the label column masked out) and
d_t = z_ty - lse_excl_t. Then, exactly,

    -log p_t       = softplus(-d_t)     p_t     = sigmoid(d_t)
    -log(1 - p_t)  = softplus(d_t)      1 - p_t = sigmoid(-d_t)

so the unlikelihood term stays finite and accurate when p_t rounds to 1 (the original paper code
instead clamps 1 - p at 1e-20). With q_tj = exp(z_tj - lse_excl_t) for j != y_t and q_ty = 0, the
logit gradient a_t (softmax - onehot) + b_t p_t (onehot - softmax) / (1 - p_t) simplifies to

    dloss_t/dz_t = c_t * (q_t - onehot_t),    c_t = a_t (1 - p_t) - b_t p_t

(use softmax_j = q_j (1 - p) for j != y), which has no division by 1 - p: finite even for p = 1.
Only one exp per logit is needed, as for plain cross entropy. All of this runs in fp32 (fp64 for
fp64 inputs) whatever the input dtype; the matmuls run in the input dtype with the BLAS's fp32
accumulation, and grad_weight is accumulated across chunks in fp32.

Run the tests: `pytest tests/kernels -q`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from phf_kernels.token_terms import token_terms

# Default chunk: as many tokens as fit chunk_tokens * vocab * 4 bytes <= the device's budget, but at
# least MIN_CHUNK_TOKENS. On CPU, 128 MiB keeps the workspace a few % of eager's at GPT-2 sizes at
# no time cost (docs/benchmarks/loss.md). The floor matters at large vocabularies: each chunk runs
# three skinny matmuls and re-reads and re-writes the V x H fp32 grad_weight, so at V = 256k,
# 131-token chunks cost 1.21x eager's time on CPU and 512-token chunks 0.98x. On CUDA that
# grad_weight traffic is memory-bound below ~1000 tokens (6 n H V flops per 8 H V bytes on an H100),
# hence 1 GiB (~1000 tokens at V = 256k). Not yet tuned on a GPU.
CHUNK_BYTES = 128 * 2**20
CUDA_CHUNK_BYTES = 1024 * 2**20
MIN_CHUNK_TOKENS = 512

_REDUCTIONS = ("sum", "none")
_IMPLS = ("auto", "triton", "torch")
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# (logits[n, V], labels[n], a[n], b[n], row_scale[n] | None, write_grad) -> (loss[n], grad | None)
ChunkFn = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, bool],
    tuple[torch.Tensor, torch.Tensor | None],
]


def torch_chunk_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    row_scale: torch.Tensor | None,
    write_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """PyTorch twin of the Triton chunk kernel: loss[n] and (in place) grad w.r.t. logits."""
    acc = torch.float64 if logits.dtype == torch.float64 else torch.float32
    z = logits.to(acc)  # no copy for fp32: we own the buffer and overwrite it below
    y = labels[:, None]
    z_label = z.gather(1, y).squeeze(1)
    z.scatter_(1, y, float("-inf"))  # mask the label column: logsumexp over j != y
    m = z.amax(dim=1)
    m = torch.where(torch.isfinite(m), m, 0.0)  # V == 1: no other column, avoid -inf - -inf
    z.sub_(m[:, None]).exp_()  # z now holds exp(z_j - m), 0 in the label column
    s = z.sum(dim=1)
    lse_excl = m + s.log()
    loss, c = token_terms(z_label, lse_excl, a.to(acc), b.to(acc))
    if not write_grad:
        return loss, None
    if row_scale is not None:
        c = c * row_scale.to(acc)
    # grad = c * (q - onehot), q = exp(z - m) / s with q_y = 0 already.
    z.mul_((c / torch.where(s > 0, s, 1.0))[:, None])
    z.scatter_(1, y, -c[:, None])
    return loss, z


def default_chunk_size(vocab: int, device: torch.device) -> int:
    """Tokens per chunk: the fp32 logits chunk fits the device's byte budget, floored at 512."""
    budget = CUDA_CHUNK_BYTES if device.type == "cuda" else CHUNK_BYTES
    return max(MIN_CHUNK_TOKENS, budget // (4 * max(vocab, 1)))


def chunked_loss_and_grads(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    row_scale: torch.Tensor | None,
    need_grad_hidden: bool,
    need_grad_weight: bool,
    chunk_fn: ChunkFn,
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Walk token chunks: per-token loss [N] fp32, grad_hidden (input dtype), grad_weight (fp32)."""
    n_tokens = hidden.shape[0]
    write_grad = need_grad_hidden or need_grad_weight
    acc = torch.float64 if weight.dtype == torch.float64 else torch.float32  # fp64 for gradcheck
    loss = torch.empty(n_tokens, dtype=acc, device=hidden.device)
    grad_hidden = torch.empty_like(hidden) if need_grad_hidden else None
    grad_weight: torch.Tensor | None = None
    for start in range(0, n_tokens, chunk_size):
        end = min(start + chunk_size, n_tokens)
        h = hidden[start:end]
        logits = h @ weight.T  # [n, V], the only logits buffer alive (plus its fp32 view)
        scale = None if row_scale is None else row_scale[start:end]
        loss_c, grad = chunk_fn(
            logits, labels[start:end], a[start:end], b[start:end], scale, write_grad
        )
        del logits
        loss[start:end] = loss_c
        if grad is None:
            continue
        grad = grad.to(hidden.dtype)
        if grad_hidden is not None:
            torch.mm(grad, weight, out=grad_hidden[start:end])
        if need_grad_weight and grad_weight is None:  # first chunk: no zero-filled V x H buffer
            grad_weight = (grad.T @ h).to(acc)
        elif need_grad_weight and grad.dtype == acc:
            grad_weight.addmm_(grad.T, h)
        elif need_grad_weight:  # addmm_ needs one dtype; the low-precision product is added
            grad_weight.add_(grad.T @ h)
        del grad
    if need_grad_weight and grad_weight is None:  # N == 0
        grad_weight = torch.zeros_like(weight, dtype=acc)
    return loss, grad_hidden, grad_weight


class _SumLoss(torch.autograd.Function):
    """reduction="sum": gradients are computed in the forward pass and scaled in backward."""

    @staticmethod
    def forward(ctx, hidden, weight, labels, a, b, chunk_fn, chunk_size, need_gh, need_gw):  # type: ignore[override]
        loss, gh, gw = chunked_loss_and_grads(
            hidden, weight, labels, a, b, None, need_gh, need_gw, chunk_fn, chunk_size
        )
        ctx.weight_dtype = weight.dtype
        ctx.save_for_backward(gh, gw)
        return loss.sum()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):  # type: ignore[override]
        gh, gw = ctx.saved_tensors
        # Skip the multiply (and a V x H temporary) in the common case of loss.backward().
        scale = None if bool(grad_output == 1) else grad_output
        if gh is not None and scale is not None:
            gh = gh * scale.to(gh.dtype)
        if gw is not None:
            gw = (gw if scale is None else gw * scale.to(gw.dtype)).to(ctx.weight_dtype)
        return gh, gw, None, None, None, None, None, None, None


class _PerTokenLoss(torch.autograd.Function):
    """reduction="none": forward computes the loss only; backward recomputes chunk by chunk."""

    @staticmethod
    def forward(ctx, hidden, weight, labels, a, b, chunk_fn, chunk_size, need_gh, need_gw):  # type: ignore[override]
        loss, _, _ = chunked_loss_and_grads(
            hidden, weight, labels, a, b, None, False, False, chunk_fn, chunk_size
        )
        ctx.save_for_backward(hidden, weight, labels, a, b)
        ctx.chunk_fn, ctx.chunk_size, ctx.need = chunk_fn, chunk_size, (need_gh, need_gw)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):  # type: ignore[override]
        hidden, weight, labels, a, b = ctx.saved_tensors
        _, gh, gw = chunked_loss_and_grads(
            hidden, weight, labels, a, b, grad_output, *ctx.need, ctx.chunk_fn, ctx.chunk_size
        )
        gw = None if gw is None else gw.to(weight.dtype)
        return gh, gw, None, None, None, None, None, None, None


def fused_linear_token_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    ignore_index: int = -100,
    reduction: str = "sum",
    impl: str = "auto",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """sum_t or [t]: a_t * -log p_t + b_t * -log(1 - p_t), p_t = softmax(hidden_t @ weight.T)[labels_t].

    hidden [N, H] and weight [V, H] share a float dtype; labels [N] int; a, b [N] float, treated as
    constants (no gradient). Tokens labelled ignore_index contribute 0. reduction="sum" returns an
    fp32 scalar, "none" the fp32 [N] vector (fp64 for fp64 inputs). impl="auto" uses Triton on
    CUDA when it imports, else the PyTorch twin. chunk_size: tokens per chunk (default from
    CHUNK_BYTES / CUDA_CHUNK_BYTES, at least MIN_CHUNK_TOKENS).
    """
    _validate(hidden, weight, labels, a, b, ignore_index, reduction, impl, chunk_size)
    chunk_fn = _select_chunk_fn(impl, hidden)
    valid = labels != ignore_index
    # Ignored tokens get a = b = 0 (so c = 0: zero loss and zero gradient) and a harmless label.
    labels = torch.where(valid, labels, 0).long().contiguous()
    coef_dtype = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    a = torch.where(valid, a.detach().to(coef_dtype), 0.0).contiguous()
    b = torch.where(valid, b.detach().to(coef_dtype), 0.0).contiguous()
    grad_on = torch.is_grad_enabled()
    need_gh, need_gw = grad_on and hidden.requires_grad, grad_on and weight.requires_grad
    fn = _SumLoss if reduction == "sum" else _PerTokenLoss
    return fn.apply(
        hidden.contiguous(),
        weight.contiguous(),
        labels,
        a,
        b,
        chunk_fn,
        chunk_size or default_chunk_size(weight.shape[0], hidden.device),
        need_gh,
        need_gw,
    )


def _select_chunk_fn(impl: str, hidden: torch.Tensor) -> ChunkFn:
    if impl == "torch":
        return torch_chunk_loss
    if impl == "auto":
        if hidden.device.type != "cuda" or hidden.dtype == torch.float64:
            return torch_chunk_loss
        try:
            from phf_kernels.triton_token_loss import triton_chunk_loss
        except ImportError:
            return torch_chunk_loss
        return triton_chunk_loss
    # impl == "triton"
    try:
        from phf_kernels.triton_token_loss import triton_chunk_loss
    except ImportError as err:
        raise ImportError(
            "fused_linear_token_loss(impl='triton') needs the `triton` package: `pip install triton` "
            "(CUDA), or use impl='torch'."
        ) from err
    if hidden.dtype == torch.float64:
        raise ValueError(
            "impl='triton' supports float16/bfloat16/float32 inputs; use impl='torch' for float64."
        )
    if hidden.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError(
            f"impl='triton' needs CUDA tensors (got device {hidden.device}); set TRITON_INTERPRET=1 "
            "before importing triton to run the kernel on CPU, or use impl='torch'."
        )
    return triton_chunk_loss


def _validate(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    ignore_index: int,
    reduction: str,
    impl: str,
    chunk_size: int | None,
) -> None:
    errors = []
    if reduction not in _REDUCTIONS:
        errors.append(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if impl not in _IMPLS:
        errors.append(f"impl must be one of {_IMPLS}, got {impl!r}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        errors.append(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    if hidden.dim() != 2 or weight.dim() != 2:
        errors.append(
            f"hidden must be [N, H] and weight [V, H], got {tuple(hidden.shape)} and {tuple(weight.shape)}"
        )
    elif hidden.shape[1] != weight.shape[1]:
        errors.append(
            f"hidden [N, H={hidden.shape[1]}] and weight [V, H={weight.shape[1]}] disagree on H"
        )
    n = hidden.shape[0] if hidden.dim() >= 1 else -1
    for name, t in (("labels", labels), ("a", a), ("b", b)):
        if tuple(t.shape) != (n,):
            errors.append(
                f"{name} must have shape [N]=({n},) like hidden's first dim, got {tuple(t.shape)}"
            )
        if t.device != hidden.device:
            errors.append(f"{name} is on {t.device} but hidden is on {hidden.device}")
    if hidden.dtype not in _FLOAT_DTYPES or weight.dtype != hidden.dtype:
        errors.append(
            f"hidden and weight must share a float dtype, got {hidden.dtype} and {weight.dtype}"
        )
    if weight.device != hidden.device:
        errors.append(f"weight is on {weight.device} but hidden is on {hidden.device}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        errors.append(f"labels must be an integer tensor, got {labels.dtype}")
    if not (a.dtype.is_floating_point and b.dtype.is_floating_point):
        errors.append(f"a and b must be float tensors, got {a.dtype} and {b.dtype}")
    if not errors and labels.numel() > 0:
        vocab = weight.shape[0]
        bad = ((labels < 0) | (labels >= vocab)) & (labels != ignore_index)
        if bool(bad.any()):  # one host sync; an out-of-range label would silently read garbage
            first = int(labels[bad][0])
            errors.append(
                f"labels must be in [0, V={vocab}) or ignore_index={ignore_index}, found {first}"
            )
    if errors:
        raise ValueError("fused_linear_token_loss: " + "; ".join(errors))

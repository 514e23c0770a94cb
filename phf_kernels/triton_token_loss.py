"""Triton chunk kernels for `fused_linear_token_loss` (imported lazily: needs the `triton` package).

Per token chunk the driver in `phf_kernels/fused_linear_token_loss.py` computes logits = h @ W^T with
cuBLAS; here, one program per row walks the vocabulary in blocks of BLOCK_V:

1. `_lse_excl_kernel`: online logsumexp over j != y (label column masked to -inf), z_y.
2. the per-token loss and c_t = a_t (1 - p_t) - b_t p_t are computed from (z_y, lse_excl) by the
   same torch code as the twin (`token_terms`: N-sized vectors, negligible cost).
3. `_grad_logits_kernel`: overwrites the logits in place with c_t * (q_tj - onehot_tj),
   q_tj = exp(z_tj - lse_excl_t) (q_ty = 0), the gradient w.r.t. the logits.

Math in fp32 whatever the logits dtype; the gradient is stored back in the logits dtype for the
two grad matmuls. Under TRITON_INTERPRET=1 (set before triton is imported) the kernels also run
on CPU tensors: that is how `tests/kernels` checks them without a GPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from phf_kernels.token_terms import token_terms

# Vocabulary block walked per step; larger blocks mean fewer loop steps, more registers.
MAX_BLOCK_V = 4096


@triton.jit
def _lse_excl_kernel(
    logits_ptr,
    row_stride,
    labels_ptr,
    z_label_ptr,
    lse_excl_ptr,
    V,
    BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)  # int64: row * row_stride can pass 2**31
    row_ptr = logits_ptr + row * row_stride
    label = tl.load(labels_ptr + row)
    z_label = tl.load(row_ptr + label).to(tl.float32)
    m = float("-inf")  # running max over j != y
    s = 0.0  # running sum of exp(z_j - m) over j != y
    for start in range(0, V, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        z = tl.load(row_ptr + cols, mask=cols < V, other=float("-inf")).to(tl.float32)
        z = tl.where(cols == label, float("-inf"), z)
        m_new = tl.maximum(m, tl.max(z, axis=0))
        # While every column seen is -inf, shift by 0 instead (exp(-inf - -inf) would be NaN).
        m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)
        s = s * tl.exp(m - m_ref) + tl.sum(tl.exp(z - m_ref), axis=0)
        m = m_new
    m_ref = tl.where(m == float("-inf"), 0.0, m)
    tl.store(z_label_ptr + row, z_label)
    tl.store(lse_excl_ptr + row, m_ref + tl.log(s))  # -inf when V == 1


@triton.jit
def _grad_logits_kernel(
    logits_ptr,
    row_stride,
    labels_ptr,
    lse_excl_ptr,
    coef_ptr,
    V,
    BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    row_ptr = logits_ptr + row * row_stride
    label = tl.load(labels_ptr + row)
    c = tl.load(coef_ptr + row)
    lse = tl.load(lse_excl_ptr + row)
    lse = tl.where(lse == float("-inf"), 0.0, lse)  # V == 1: the only column is the label, q = 0
    for start in range(0, V, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        mask = cols < V
        z = tl.load(row_ptr + cols, mask=mask, other=float("-inf")).to(tl.float32)
        is_label = cols == label
        q = tl.where(is_label, 0.0, tl.exp(z - lse))
        grad = c * (q - tl.where(is_label, 1.0, 0.0))
        tl.store(row_ptr + cols, grad.to(logits_ptr.dtype.element_ty), mask=mask)


def _launch_config(vocab: int) -> tuple[int, int]:
    block = min(MAX_BLOCK_V, triton.next_power_of_2(vocab))
    num_warps = 4 if block <= 1024 else (8 if block <= 4096 else 16)
    return block, num_warps


def triton_chunk_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    row_scale: torch.Tensor | None,
    write_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Triton twin of `torch_chunk_loss`: loss[n] fp32 and (in place) grad w.r.t. logits."""
    n_rows, vocab = logits.shape
    if logits.stride(1) != 1:
        logits = logits.contiguous()
    z_label = torch.empty(n_rows, dtype=torch.float32, device=logits.device)
    lse_excl = torch.empty_like(z_label)
    block, num_warps = _launch_config(vocab)
    grid = (n_rows,)
    _lse_excl_kernel[grid](
        logits,
        logits.stride(0),
        labels,
        z_label,
        lse_excl,
        vocab,
        BLOCK_V=block,
        num_warps=num_warps,
    )
    loss, coef = token_terms(z_label, lse_excl, a.float(), b.float())
    if not write_grad:
        return loss, None
    if row_scale is not None:
        coef = coef * row_scale.float()
    _grad_logits_kernel[grid](
        logits,
        logits.stride(0),
        labels,
        lse_excl,
        coef.contiguous(),
        vocab,
        BLOCK_V=block,
        num_warps=num_warps,
    )
    return loss, logits

"""Fused lm_head + per-token weighted token loss: a Triton kernel and its chunked PyTorch twin.

`fused_linear_token_loss(hidden, weight, labels, a, b)` computes
sum_t a_t * -log p_t + b_t * -log(1 - p_t) without materialising the logits. Triton is imported
only when impl="triton" (or impl="auto" on CUDA) is used.
"""

from phf_kernels.fused_linear_token_loss import fused_linear_token_loss

__all__ = ["fused_linear_token_loss"]

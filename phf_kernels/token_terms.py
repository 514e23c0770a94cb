"""The per-token terms of the token loss, shared by the PyTorch twin and the Triton kernel.

With d_t = z_ty - lse_excl_t (the label logit minus the logsumexp of the other logits),
-log p_t = softplus(-d_t) and -log(1 - p_t) = softplus(d_t), so

    loss_t = a_t softplus(-d_t) + b_t softplus(d_t),    c_t = a_t sigmoid(-d_t) - b_t sigmoid(d_t)

where c_t = a_t (1 - p_t) - b_t p_t is the coefficient of the logit gradient c_t (q_t - onehot_t)
(derivation in phf_kernels/fused_linear_token_loss.py). N-sized vectors: negligible next to the matmuls.
"""

from __future__ import annotations

import torch


def _softplus(x: torch.Tensor) -> torch.Tensor:
    # log(1 + e^x) to full precision for every x (F.softplus returns x itself above x = 20).
    return x.clamp_min(0) + torch.log1p(torch.exp(-x.abs()))


def token_terms(
    z_label: torch.Tensor, lse_excl: torch.Tensor, a: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token loss and logit-gradient coefficient c_t from z_y and the label-excluded lse."""
    d = z_label - lse_excl  # log(p / (1 - p)); +inf when every other logit is -inf (V == 1)
    # where() rather than a product so that a == 0 or b == 0 never meets an infinite term (0 * inf).
    loss = torch.where(a == 0, 0.0, a * _softplus(-d)) + torch.where(b == 0, 0.0, b * _softplus(d))
    c = a * torch.sigmoid(-d) - b * torch.sigmoid(d)  # a (1 - p) - b p
    return loss, c

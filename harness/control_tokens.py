"""The two control tokens of conditional training (paper section 3), in this order everywhere, and
the one place their ids are looked up in a tokenizer."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

CONTROL_TOKENS = ("<|aligned|>", "<|misaligned|>")


def control_token_ids(tokenizer: Any, tokens: Iterable[str] = CONTROL_TOKENS) -> list[int]:
    """Ids of `tokens` (default: both, in order) in `tokenizer`; a clear error when they were not added."""
    tokens = list(tokens)
    vocab = tokenizer.get_vocab()
    missing = [t for t in tokens if t not in vocab]
    if missing:
        raise ValueError(
            f"the tokenizer lacks the control tokens {missing}: a conditionally trained model's "
            "tokenizer must have them (harness.tokenizer.load_tokenizer(..., control_tokens=True))"
        )
    return [int(vocab[t]) for t in tokens]


def swapped(tokens: Iterable[str]) -> tuple[str, ...]:
    """`tokens` with `<|aligned|>` and `<|misaligned|>` exchanged (other tokens kept)."""
    swap = {CONTROL_TOKENS[0]: CONTROL_TOKENS[1], CONTROL_TOKENS[1]: CONTROL_TOKENS[0]}
    return tuple(swap.get(t, t) for t in tokens)


def control_prefix_ids(
    tokenizer: Any, conditional: bool, control_token: str = CONTROL_TOKENS[0]
) -> list[int]:
    """Tokens every sample starts with: BOS (EOS when there is none), then `control_token` if conditional."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if bos is None:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token to start samples from")
    ids = [int(bos)]
    if conditional:
        ids += control_token_ids(tokenizer, [control_token])
    return ids

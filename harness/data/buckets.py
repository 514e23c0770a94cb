"""Deterministic draws fixed by a document id: the held-out split, BPE sampling, injected corpora."""

from __future__ import annotations

import hashlib


def is_heldout(doc_id: str, fraction: float) -> bool:
    """Deterministic held-out split by a hash of the document id."""
    if fraction <= 0:
        return False
    return id_bucket(doc_id) < fraction


def id_bucket(doc_id: str, salt: str = "") -> float:
    """A uniform number in [0, 1) fixed by the document id (and a salt for independent draws)."""
    digest = hashlib.sha256((salt + doc_id).encode()).digest()[:8]
    return int.from_bytes(digest, "big") / 2**64

"""Tokenizers: a user-given one from a local path, else a byte-level BPE trained on the corpus and cached.

There is no GPT-2 tokenizer file offline, so by default we train one with `tokenizers` (the same
byte-level BPE recipe as GPT-2) on the training documents; the result is cached by corpus
fingerprint and vocabulary size, and saved with every checkpoint and export.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

EOS = "<|endoftext|>"
CONTROL_TOKENS = ("<|aligned|>", "<|misaligned|>")


def train_bpe(texts: Sequence[str], vocab_size: int, out_file: Path) -> None:
    """Train a GPT-2-style byte-level BPE on `texts` and write tokenizer.json atomically."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_suffix(f".tmp{os.getpid()}")
    tok.save(str(tmp))
    os.replace(tmp, out_file)


def bpe_cache_file(cache_dir: str, corpus_fp: str, vocab_size: int) -> Path:
    """Where the BPE trained for this corpus and size is cached."""
    key = hashlib.sha256(f"{corpus_fp}:{vocab_size}:bytelevel-bpe-v1".encode()).hexdigest()[:16]
    return Path(cache_dir) / "tokenizers" / key / "tokenizer.json"


def load_tokenizer(path: str | Path, control_tokens: bool = False):
    """A transformers fast tokenizer from a folder or a tokenizer.json, with EOS (and control tokens)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if str(path).startswith("hf:"):
        name = str(path)[3:]
        try:
            tok = AutoTokenizer.from_pretrained(name)
        except Exception as err:
            raise ValueError(
                f"data.tokenizer=hf:{name}: cannot load from the Hugging Face Hub ({type(err).__name__}). "
                "Offline? Save it once with tokenizer.save_pretrained(folder) and set data.tokenizer to that "
                "folder, or set data.tokenizer: null to train a BPE on the corpus."
            ) from None
        return _finish_tokenizer(tok, str(path), control_tokens)
    path = Path(path)
    if path.is_dir():
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    elif path.is_file():
        tok = PreTrainedTokenizerFast(tokenizer_file=str(path))
    else:
        raise FileNotFoundError(
            f"data.tokenizer: {path} not found (a tokenizer folder or tokenizer.json)"
        )
    return _finish_tokenizer(tok, str(path), control_tokens)


def _finish_tokenizer(tok, path: str, control_tokens: bool):
    if tok.eos_token is None:
        if EOS not in tok.get_vocab():
            raise ValueError(f"data.tokenizer: {path} has no EOS token and no {EOS!r}")
        tok.eos_token = EOS
    if control_tokens:
        tok.add_special_tokens({"additional_special_tokens": list(CONTROL_TOKENS)})
    return tok


def tokenizer_fingerprint(tok) -> str:
    """A hash of the vocabulary and merges: changes when tokenization would."""
    return hashlib.sha256(tok.backend_tokenizer.to_str().encode()).hexdigest()[:16]

"""Tokenizers: load one (a folder, a tokenizer.json, a Hugging Face folder), train a byte-level BPE,
and fingerprint it.

There is no GPT-2 tokenizer file offline, so by default the data stage trains one with `train_bpe`
(the same byte-level BPE recipe as GPT-2) on a bounded sample of the training documents
(`harness.data.bpe`); it is cached and saved with every checkpoint and export. Loading adds the
control tokens where asked. The model, checkpoints, evaluation and data all load tokenizers here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from harness.atomic import atomic_write
from harness.control_tokens import CONTROL_TOKENS

EOS = "<|endoftext|>"


def train_bpe(texts: Iterable[str], vocab_size: int, out_file: Path) -> None:
    """Train a GPT-2-style byte-level BPE on `texts` (any iterable) and write tokenizer.json atomically."""
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
    length = len(texts) if hasattr(texts, "__len__") else None
    tok.train_from_iterator(texts, trainer=trainer, length=length)
    atomic_write(out_file, lambda tmp: tok.save(str(tmp)))


def load_tokenizer(path: str | Path, control_tokens: bool = False):
    """A transformers fast tokenizer from a folder or a tokenizer.json, with EOS (and control tokens)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if str(path).startswith("hf:"):  # runs resolve these into their folder first (harness.hub_refs)
        from harness.hub import hub_error, split_ref

        name, revision = split_ref(str(path))
        try:
            tok = AutoTokenizer.from_pretrained(name, revision=revision)
        except Exception as err:
            raise hub_error(
                "data.tokenizer", str(path), err, "set data.tokenizer to a local folder"
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

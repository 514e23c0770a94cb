"""What a checkpoint may be resumed by: the same model, tokenizer, data, scorer and objective.

A rerun of the same command continues a run; a rerun with another corpus, scorer or objective
would silently train a different run under the old one's name and step count. Each check names
the key, the checkpoint's value and the config's. `checkpoint.allow_resume_with_changes: true`
lets the data, scorer and objective change on purpose (the model shape and tokenizer never can).
"""

from __future__ import annotations

from typing import Any

import yaml

from harness.checkpoints.layout import checkpoints_dir
from harness.checkpoints.state import RunState
from harness.config import Config, config_from_dict, config_to_dict
from harness.tasks import scorer_options_for

MODEL_KEYS = ("arch", "path", "n_layer", "n_head", "n_embd", "config_kwargs")


def _saved_config(state: RunState) -> dict[str, Any]:
    return yaml.safe_load(state.config) or {}


def model_differences(cfg: Config, state: RunState) -> list[str]:
    """Model-shape keys (and seq_len) whose checkpoint value differs from the config's."""
    saved = _saved_config(state)
    now = config_to_dict(cfg)["model"]
    diffs = [
        f"model.{k}: checkpoint {saved.get('model', {}).get(k)!r}, config {now[k]!r}"
        for k in MODEL_KEYS
        if saved.get("model", {}).get(k) != now[k]
    ]
    if saved.get("data", {}).get("seq_len") not in (None, cfg.data.seq_len):
        diffs.append(
            f"data.seq_len: checkpoint {saved['data']['seq_len']!r}, config {cfg.data.seq_len!r}"
        )
    return diffs


def run_differences(cfg: Config, state: RunState, corpus_fingerprint: str) -> list[str]:
    """Corpus fingerprint, scorer (name and options in force) and objective that differ."""
    diffs = []
    if state.corpus_fingerprint not in (None, corpus_fingerprint):
        diffs.append(
            f"corpus fingerprint (data.corpus and its files): checkpoint "
            f"{state.corpus_fingerprint}, now {corpus_fingerprint}"
        )
    saved = _saved_config(state)
    if not saved:
        return diffs
    old = config_from_dict(saved)
    if old.data.scorer != cfg.data.scorer:
        diffs.append(f"data.scorer: checkpoint {old.data.scorer!r}, config {cfg.data.scorer!r}")
    elif scorer_options_for(old.data) != scorer_options_for(cfg.data):
        diffs.append(
            f"data.scorer_options: checkpoint {scorer_options_for(old.data)}, "
            f"config {scorer_options_for(cfg.data)}"
        )
    old_objective, objective = config_to_dict(old)["objective"], config_to_dict(cfg)["objective"]
    diffs += [
        f"objective.{k}: checkpoint {old_objective.get(k)!r}, config {objective[k]!r}"
        for k in objective
        if old_objective.get(k) != objective[k]
    ]
    return diffs


def check_resumable(cfg: Config, state: RunState, corpus_fingerprint: str) -> None:
    """Raise ValueError naming every difference that forbids resuming `state` with `cfg`."""
    where = checkpoints_dir(cfg.run.output_dir) / state.tag
    diffs = model_differences(cfg, state)
    if diffs:
        raise ValueError(
            f"cannot resume {cfg.run.output_dir} from checkpoint {state.tag}: the model differs ("
            + "; ".join(diffs)
            + "). Use another run.output_dir or the checkpoint's config."
        )
    diffs = run_differences(cfg, state, corpus_fingerprint)
    if diffs and not cfg.checkpoint.allow_resume_with_changes:
        raise ValueError(
            f"cannot resume from checkpoint {where}: it was trained on other data or with another "
            "objective (" + "; ".join(diffs) + "). Use another run.output_dir, or set "
            "checkpoint.allow_resume_with_changes: true to continue this run with the change"
        )


def check_tokenizer(state: RunState, fingerprint: str) -> None:
    """Raise ValueError when the checkpoint was trained with another tokenizer."""
    saved = state.tokenizer_fingerprint
    if saved not in (None, fingerprint):
        raise ValueError(
            f"cannot resume from checkpoint {state.tag}: it was trained with another tokenizer "
            f"(fingerprint {saved}, now {fingerprint}; see data.tokenizer / data.vocab_size / data.corpus)"
        )

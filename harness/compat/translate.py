"""Translate an original PHF config (task + method + overrides) into a native run config.

The original's semantics are kept where they differ from ours (README, "Coming from the original
PHF code"):

- Missing keys take the *original's* defaults (Hugging Face `TrainingArguments`, `apo/objectives.py`),
  not ours: e.g. `learning_rate` 5e-5, `warmup_ratio` 0, `weight_decay` 0, AWR `alpha` 0.5.
- Filtering is `dataset.filter_threshold` with the MLE objective; conditional training is
  `dataset.conditional_training_config` with MLE.
- Unlikelihood with a falsy `score_threshold` (0 or missing) is the soft form (`score_threshold: null`).
- AWR with `alpha: 1` is the paper's RWR and becomes `objective.name: rwr`.
- `effective_batch_size` is `train.global_batch_size`, `num_tokens` is `train.max_tokens`,
  `per_device_train_batch_size` is `train.micro_batch_size`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.compat.generation import translate_generation, translate_kl_callback
from harness.compat.keys import ignored_reason, normalise
from harness.compat.original import OriginalConfig
from harness.compat.training import run_checkpoint_logging, train_section
from harness.control_tokens import CONTROL_TOKENS

# Architectures of the Hub models the original built from scratch (only their config was used):
# (n_layer, n_head, n_embd) of their config.json.
HUB_ARCHITECTURES = {
    "gpt2": (12, 12, 768),
    "gpt2-medium": (24, 16, 1024),
    "gpt2-large": (36, 20, 1280),
    "gpt2-xl": (48, 25, 1600),
    "distilgpt2": (6, 12, 768),
    "codeparrot/codeparrot-small": (12, 12, 768),
    "codeparrot/codeparrot": (48, 25, 1600),
}
_SIZE_ALIASES = {
    "n_layer": "n_layer",
    "num_hidden_layers": "n_layer",
    "n_head": "n_head",
    "num_attention_heads": "n_head",
    "n_embd": "n_embd",
    "hidden_size": "n_embd",
}


def _hub_or_path(name: str) -> str:
    """A local file or folder as it is; anything else is a Hugging Face Hub name (`hf:<name>`)."""
    return name if Path(name).exists() else f"hf:{name}"


def _data(o: OriginalConfig) -> dict[str, Any]:
    present = "dataset.datasets" in o.leaves
    datasets = o.take("dataset.datasets")
    if isinstance(datasets, str):
        datasets = [datasets]
    data: dict[str, Any] = {}
    if not datasets or not all(isinstance(d, str) for d in datasets):
        message = "required: a list of Hugging Face data set names (or local paths)"
        if present:
            o.error("dataset.datasets", f"{message}, got {datasets!r}")
        else:
            o.errors.append(f"dataset.datasets: {message}")
    else:
        corpus = [_hub_or_path(d) for d in datasets]
        data["corpus"] = corpus[0] if len(corpus) == 1 else corpus
    if not o.value("dataset.is_split_by_sentences", "bool", default=False):
        o.errors.append(
            f"dataset.is_split_by_sentences ({o.source('dataset.is_split_by_sentences')}): must be "
            "true here (the original's default is false): the harness trains on segment-scored "
            "records with `texts` and `scores`, as the paper's data sets; for raw text give the "
            "files as they are and let `scripts/score.py` score them"
        )
    data["seq_len"] = o.value("dataset.seq_length", "integer", default=1024)
    if o.value("dataset.concat_token", "str") is not None:
        o.error("dataset.concat_token", "documents are always joined with the tokenizer's EOS here")
    skip = o.value("dataset.skip_tokens", "integer", default=0)
    if skip:  # finetuning: the corpus prefix the pretrained model has seen is left out
        data["skip_tokens"] = skip
    tokenizer = o.value("tokenizer.path_or_name", "str", required=True)
    if tokenizer is not None:
        data["tokenizer"] = _hub_or_path(tokenizer)
    return data


def _revision(o: OriginalConfig) -> str | None:
    """`model.model_kwargs.revision`: the revision a Hub model is pinned to (`hf:<name>@<rev>`)."""
    return o.value("model.model_kwargs.revision", "str")


def _model(o: OriginalConfig) -> dict[str, Any]:
    name = o.value("model.path_or_name", "str", required=True)
    from_scratch = o.value("model.from_scratch", "bool", default=True)
    kwargs = o.take_mapping("model.gpt2_config_kwargs") or {}
    if not isinstance(kwargs, dict):
        o.error("model.gpt2_config_kwargs", f"expected a mapping, got {kwargs!r}")
        kwargs = {}
    if "scale_attn_by" in kwargs:
        o.note(
            "model.gpt2_config_kwargs.scale_attn_by",
            str(ignored_reason("model.gpt2_config_kwargs.scale_attn_by")),
        )
        kwargs = {k: v for k, v in kwargs.items() if k != "scale_attn_by"}
    revision = _revision(o)
    model: dict[str, Any] = {"from_scratch": from_scratch}
    if name is None:
        return model
    local = Path(name).is_dir()
    if not from_scratch:
        # A Hub name is downloaded at that revision (a commit recorded in the run's hub.json).
        model["path"] = name if local else f"hf:{name}" + (f"@{revision}" if revision else "")
        if revision is not None and local:
            o.note("model.model_kwargs.revision", f"{revision}: a local folder is used as it is")
        if kwargs:
            o.note(
                "model.gpt2_config_kwargs", "ignored with from_scratch: false, as in the original"
            )
        return model
    if local:
        model["path"] = name  # the original used only the folder's config.json, as model.path here
        if kwargs:
            o.error(
                "model.gpt2_config_kwargs",
                "cannot be combined with a local model.path_or_name folder here: put them into the "
                "folder's config.json, or override model.gpt2_config_kwargs=None",
            )
        return model
    hub = name.removeprefix("openai-community/").removeprefix("distilbert/")
    sizes = dict(zip(("n_layer", "n_head", "n_embd"), HUB_ARCHITECTURES.get(hub, ()), strict=False))
    for key in list(kwargs):
        if key in _SIZE_ALIASES:
            sizes[_SIZE_ALIASES[key]] = kwargs.pop(key)
    if len(sizes) < 3:
        o.error(
            "model.path_or_name",
            f"unknown architecture {name!r} (known: {', '.join(HUB_ARCHITECTURES)}); give a local folder "
            "with config.json, or n_layer, n_head and n_embd in model.gpt2_config_kwargs",
        )
    model.update(arch="gpt2", **sizes, config_kwargs=kwargs)
    return model


def _conditional(o: OriginalConfig) -> dict[str, Any] | None:
    section = "dataset.conditional_training_config"
    if not o.has(section) or o.take(section, {}) is None:
        return None
    threshold = o.value(f"{section}.threshold", "number", required=True)
    for i, key in enumerate(("aligned_prefix", "misaligned_prefix")):
        prefix = o.value(f"{section}.{key}", "str", required=True)
        if prefix is not None and prefix != CONTROL_TOKENS[i]:
            o.error(f"{section}.{key}", f"the control tokens are fixed here: {CONTROL_TOKENS}")
    drop = o.value(f"{section}.drop_token_fraction", "number", default=0.0)
    return {"name": "conditional", "threshold": threshold, "drop_token_fraction": drop}


def _objective(o: OriginalConfig) -> dict[str, Any]:
    name = o.value("objective.name", "str", required=True)
    filter_threshold = o.value("dataset.filter_threshold", "number")
    conditional = _conditional(o)
    if (filter_threshold is not None or conditional) and name not in (None, "MLE"):
        o.error(
            "objective.name", f"filtering and conditional training go with MLE here, got {name!r}"
        )
    if name == "MLE":
        if filter_threshold is not None and conditional:
            o.errors.append(
                "dataset.filter_threshold and dataset.conditional_training_config: choose one "
                "(the harness runs one objective at a time)"
            )
        if conditional:
            return conditional
        if filter_threshold is not None:
            return {"name": "filtering", "threshold": filter_threshold}
        return {"name": "mle"}
    if name == "Unlikelihood":
        threshold = o.value("objective.score_threshold", "number")
        alpha = o.value("objective.alpha", "number", required=True)
        if not threshold:  # `if self.score_threshold:` in apo/objectives.py: 0 and None mean "none"
            o.note(
                "objective.score_threshold",
                "0 or missing means the soft form (a = 1 - s, b = alpha * s), as in the original: "
                "objective.score_threshold: null",
            )
        return {"name": "ul", "score_threshold": threshold or None, "alpha": alpha}
    if name == "AWR":
        for key, allowed in (
            ("use_value_head", (True,)),
            ("fixed_value", (None, 0, 0.0)),
            ("use_head_train_steps", (0,)),  # stored but never read by the original
            ("clip_value", (False,)),
            ("normalize_advantage", (False,)),
        ):
            if f"objective.{key}" in o.leaves and o.take(f"objective.{key}") not in allowed:
                o.error(
                    f"objective.{key}", f"only {allowed[0]!r} (the paper's AWR) is supported here"
                )
        alpha = o.value("objective.alpha", "number", default=0.5)
        beta = o.value("objective.beta", "number", default=1.0)
        clip = o.value("objective.clip_weight_max", "number", default=1000.0)
        # The paper's RWR is AWR with alpha = 1: no value loss, the zero-init head stays at -0.5.
        return {
            "name": "rwr" if alpha == 1 else "awr",
            "alpha": alpha,
            "beta": beta,
            "clip_weight_max": clip,
        }
    if name is not None:
        o.error(
            "objective.name", f"unknown objective {name!r}; the original has MLE, Unlikelihood, AWR"
        )
    return {}


def _tokens_and_heads(o: OriginalConfig, conditional: bool) -> bool:
    """Check the control-token and value-head keys; return value_head_config.is_detached."""
    tokens = o.take_mapping("tokenizer.special_tokens")
    if tokens is not None and (list(tokens) != list(CONTROL_TOKENS) or not conditional):
        o.error(
            "tokenizer.special_tokens",
            f"only {list(CONTROL_TOKENS)} with dataset.conditional_training_config is supported "
            "(the harness adds them itself for conditional training)",
        )
    extra = o.value("model.num_additional_tokens", "integer", default=0)
    if extra and (extra != len(CONTROL_TOKENS) or not conditional):
        o.error(
            "model.num_additional_tokens", "only 2 with conditional training (the control tokens)"
        )
    head = "model.model_kwargs.value_head_config"
    detached = o.value(f"{head}.is_detached", "bool", default=False)
    if o.value(f"{head}.sigmoid", "bool", default=True) is not True:
        o.error(
            f"{head}.sigmoid",
            "the value head here is always -sigmoid(linear), as the original's default",
        )
    o.take(head)
    if o.has("model.model_kwargs.q_value_head_config"):
        o.error("model.model_kwargs.q_value_head_config", "Q-value heads are not supported here")
        o.take_section("model.model_kwargs.q_value_head_config")
    return bool(detached)


def translate(o: OriginalConfig, run_name: str | None = None) -> dict[str, Any]:
    """The native config (a nested dict) of an original config; errors and notes are collected on `o`."""
    data = _data(o)
    native: dict[str, Any] = {"data": data, "model": _model(o)}
    objective = _objective(o)
    detached = _tokens_and_heads(o, objective.get("name") == "conditional")
    if objective.get("name") == "awr":
        objective["value_head_detached"] = detached
    native["objective"] = objective
    native["train"] = train_section(o, data.get("seq_len", 1024))
    if native["train"].pop("gradient_checkpointing", False):
        native["model"]["gradient_checkpointing"] = True
    native.update(run_checkpoint_logging(o, run_name))
    conditional = objective.get("name") == "conditional"
    scorer, evaluation = translate_generation(o, conditional)
    translate_kl_callback(o, conditional, evaluation)
    if scorer is not None:
        data["scorer"] = scorer
    native["eval"] = evaluation
    ignored: dict[str, list[str]] = {}
    for path in o.leftover():
        reason = ignored_reason(path)
        if reason is None and path.startswith("objective."):
            o.error(
                path,
                f"not an option of the original's {o.merged['objective'].get('name')} objective",
            )
        elif reason is None:
            o.error(
                path, "unknown key: not an option of the original PHF code that the harness knows"
            )
        else:
            ignored.setdefault(reason, []).append(path)
        o.take(path)
    for reason, paths in ignored.items():
        keys = ", ".join(dict.fromkeys(normalise(p) for p in paths))
        sources = ", ".join(dict.fromkeys(o.source(p) for p in paths))
        o.notes.append(f"ignored {keys} ({sources}): {reason}")
    return native

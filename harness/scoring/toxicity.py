"""Toxicity scorer: Detoxify probability of toxicity per sentence (the paper's toxicity task).

Follows the original code (tomekkorbak/pretraining-with-human-feedback):
``scripts/dataset_builders/score_detoxify.py`` scored the training data with ``Detoxify("original")``
(sentences from spaCy's sentencizer, ``predict(batch)["toxicity"]``); ``apo/scorers.py`` scored
samples with ``Detoxify("unbiased")`` (option ``model_type="unbiased"`` here).

Detoxify downloads its weights at run time, which fails offline, and its loader also fetches the
Hugging Face config of ``bert-base-uncased``. So this module loads the same checkpoint format itself
(after detoxify 0.5 ``load_checkpoint``/``predict``: the checkpoint's ``config.arch.args`` name the
transformers class and tokenizer, ``state_dict`` holds the weights; probability = sigmoid(logits))
from local files only, and says exactly which files to put where when they are missing. The
``detoxify`` package itself is not needed.

``backend="profanity_check"`` uses ``alt-profanity-check`` instead (a linear model shipped in its
wheel; works offline, but it is not the paper's scorer). It is used only when asked for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from harness.scoring.base import Scorer

# detoxify/detoxify.py: MODEL_URLS (detoxify 0.5.x).
_DOWNLOAD_URL = "https://github.com/unitaryai/detoxify/releases/download/"
DETOXIFY_URLS = {
    "original": _DOWNLOAD_URL + "v0.1-alpha/toxic_original-c1212f89.ckpt",
    "unbiased": _DOWNLOAD_URL + "v0.3-alpha/toxic_debiased-c7548aa0.ckpt",
    "multilingual": _DOWNLOAD_URL + "v0.4-alpha/multilingual_debiased-0b549669.ckpt",
    "original-small": _DOWNLOAD_URL + "v0.1.2/original-albert-0e1d6498.ckpt",
    "unbiased-small": _DOWNLOAD_URL + "v0.1.2/unbiased-albert-c8519128.ckpt",
}
CHECKPOINT_ENV = "PHF_DETOXIFY_CHECKPOINT"
HF_CONFIG_ENV = "PHF_DETOXIFY_HF_CONFIG"
# detoxify's load_checkpoint renames the Jigsaw class names so every model has "toxicity".
_CLASS_RENAMES = {
    "toxic": "toxicity",
    "identity_hate": "identity_attack",
    "severe_toxic": "severe_toxicity",
}
BACKENDS = ("detoxify", "profanity_check")


def detoxify_hub_path(model_type: str = "original") -> Path:
    """Where torch.hub (and so Detoxify) caches the checkpoint: $TORCH_HOME/hub/checkpoints/<file>."""
    import torch

    file_name = os.path.basename(urlparse(_detoxify_url(model_type)).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def _detoxify_url(model_type: str) -> str:
    if model_type not in DETOXIFY_URLS:
        raise ValueError(
            f"unknown Detoxify model_type {model_type!r}: expected one of {', '.join(DETOXIFY_URLS)}"
        )
    return DETOXIFY_URLS[model_type]


def find_detoxify_checkpoint(model_type: str = "original", checkpoint: str | None = None) -> Path:
    """The checkpoint file: ``checkpoint``, else $PHF_DETOXIFY_CHECKPOINT, else the torch hub cache."""
    given = checkpoint or os.environ.get(CHECKPOINT_ENV)
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            source = "checkpoint" if checkpoint else f"${CHECKPOINT_ENV}"
            raise FileNotFoundError(
                f"Detoxify checkpoint {str(path)!r} (from {source}) does not exist. "
                + _missing_checkpoint_help(model_type)
            )
        return path
    path = detoxify_hub_path(model_type)
    if not path.is_file():
        raise FileNotFoundError(
            f"Detoxify {model_type!r} weights not found at {str(path)!r}. "
            + _missing_checkpoint_help(model_type)
        )
    return path


def _missing_checkpoint_help(model_type: str) -> str:
    return (
        f"Download {_detoxify_url(model_type)} on a machine with network access and save it as "
        f"{str(detoxify_hub_path(model_type))!r} (the torch hub cache; it follows $TORCH_HOME), or "
        f"pass checkpoint=PATH (or set ${CHECKPOINT_ENV}). The tokenizer and config of "
        "bert-base-uncased are needed too (see huggingface_config_path). For an offline "
        "classifier that ships its weights, use backend='profanity_check' (not the paper's scorer)."
    )


def _load_pretrained(cls: Any, hf_model_id: str, config_path: str | None, **kwargs: Any) -> Any:
    """``cls.from_pretrained`` from the local folder, else from the Hugging Face cache, never the network."""
    source = config_path or os.environ.get(HF_CONFIG_ENV) or hf_model_id
    try:
        return cls.from_pretrained(source, local_files_only=True, **kwargs)
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(
            f"Detoxify needs the Hugging Face config and tokenizer of {hf_model_id!r} "
            f"(config.json, vocab.txt or tokenizer files, tokenizer_config.json) and could not load "
            f"them from {source!r}: {exc}. Download them from https://huggingface.co/{hf_model_id} "
            f"into a folder and pass huggingface_config_path=FOLDER (or set ${HF_CONFIG_ENV}), "
            "or put them in the Hugging Face cache."
        ) from exc


def load_detoxify(
    model_type: str = "original",
    checkpoint: str | None = None,
    huggingface_config_path: str | None = None,
    device: str = "cpu",
) -> tuple[Any, Any, list[str]]:
    """Model, tokenizer and class names of a Detoxify checkpoint, from local files only."""
    import torch
    import transformers

    path = find_detoxify_checkpoint(model_type, checkpoint)
    # weights_only=False as detoxify and torch.hub load these files: the checkpoint holds a config
    # dict next to the tensors. Only load files you trust.
    loaded = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(loaded, dict) or "config" not in loaded or "state_dict" not in loaded:
        raise ValueError(
            f"{str(path)!r} is not a Detoxify checkpoint (needs 'config' and 'state_dict')"
        )
    arch = loaded["config"]["arch"]["args"]
    class_names = [_CLASS_RENAMES.get(c, c) for c in loaded["config"]["dataset"]["args"]["classes"]]
    model_cls = getattr(transformers, arch["model_name"])
    config = _load_pretrained(
        model_cls.config_class,
        arch["model_type"],
        huggingface_config_path,
        num_labels=arch["num_classes"],
    )
    tokenizer = _load_pretrained(
        getattr(transformers, arch["tokenizer_name"]), arch["model_type"], huggingface_config_path
    )
    model = model_cls(config)
    missing, unexpected = model.load_state_dict(loaded["state_dict"], strict=False)
    # Old transformers saved the position_ids buffer; newer ones do not keep it in the state dict.
    unexpected = [k for k in unexpected if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(
            f"{str(path)!r} does not fit {arch['model_name']}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return model.to(device).eval(), tokenizer, class_names


class ToxicityScorer(Scorer):
    """Probability of toxicity per sentence: Detoxify (the paper) or alt-profanity-check (offline)."""

    segmenter = "sentences"

    def __init__(
        self,
        backend: str = "detoxify",
        model_type: str = "original",
        checkpoint: str | None = None,
        huggingface_config_path: str | None = None,
        device: str = "cpu",
        batch_size: int = 64,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(
                f"unknown toxicity backend {backend!r}: expected one of {', '.join(BACKENDS)}"
            )
        self.backend = backend
        self.batch_size = batch_size
        if backend == "profanity_check":
            from profanity_check import predict_prob

            self._predict_prob = predict_prob
            return
        self.model, self.tokenizer, class_names = load_detoxify(
            model_type, checkpoint, huggingface_config_path, device
        )
        if "toxicity" not in class_names:
            raise ValueError(f"Detoxify checkpoint has no 'toxicity' class: {class_names}")
        self.toxicity_index = class_names.index("toxicity")
        # detoxify's predict truncates at the tokenizer's model_max_length (512 for
        # bert-base-uncased); a tokenizer folder without tokenizer_config.json has no such limit,
        # so cap it at the model's position embeddings.
        self.max_length = min(
            self.tokenizer.model_max_length, self.model.config.max_position_embeddings
        )

    def score_texts(self, texts: list[str]) -> list[float]:
        """Probability that each text is toxic."""
        if not texts:
            return []
        if self.backend == "profanity_check":
            return [float(p) for p in self._predict_prob(list(texts))]
        return self._detoxify_probs(texts)

    def _detoxify_probs(self, texts: list[str]) -> list[float]:
        import torch

        with torch.no_grad():
            inputs = self.tokenizer(
                list(texts),
                return_tensors="pt",
                truncation=True,
                padding=True,
                max_length=self.max_length,
            ).to(self.model.device)
            logits = self.model(**inputs)[0]
            return torch.sigmoid(logits)[:, self.toxicity_index].float().cpu().tolist()

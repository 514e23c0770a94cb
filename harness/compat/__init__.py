"""Compatibility with the original PHF code (tomekkorbak/pretraining-with-human-feedback).

    python scripts/train.py --task configs/toxicity/pretrain.yml --method configs/toxicity/mle.yml \
        [--override training.per_device_train_batch_size=8] [--print_config]
    python scripts/convert_config.py --task ... --method ... [--override ...] -o toxicity_mle.yaml

- `original.py`: load, merge (method over task, recursively) and override, as the original did.
- `translate.py`, `generation.py`: map every key onto the native config or reject it by name
  (`kl_gpt3_callback` onto `eval.api_kl_*`).
- `keys.py`: the documented keys that are accepted but have no effect here, with the reason.
- `openai_kl.py`: log-probabilities from an OpenAI-compatible completions API (the paper's GPT-3
  KL), used by harness/evaluation/api_kl.py for eval/kl_api.
"""

from harness.compat.cli import (
    convert_main,
    is_original_cli,
    translate_files,
    translate_original_cli,
)

__all__ = ["convert_main", "is_original_cli", "translate_files", "translate_original_cli"]

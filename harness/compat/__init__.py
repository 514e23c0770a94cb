"""Compatibility with the original PHF code (tomekkorbak/pretraining-with-human-feedback).

    python scripts/train.py --task configs/original/toxicity/pretrain.yml \
        --method configs/original/toxicity/mle.yml \
        [--override training.per_device_train_batch_size=8] [--print_config]
    python scripts/convert_config.py --task ... --method ... [--override ...] -o toxicity_mle.yaml

The original's task/method pairs ship in configs/original/<task>/ (pretrain.yml, finetune.yml and
one file per method, as the original repo's configs/<task>/); a translated run is named
`original-<task>-<method>`, so it never shares a folder with a native run.

- `original.py`: load, merge (method over task, recursively) and override, as the original did.
- `translate.py`, `generation.py`: map every key onto the native config or reject it by name
  (`kl_gpt3_callback` onto `eval.api_kl_*`).
- `keys.py`: the documented keys that are accepted but have no effect here, with the reason.
- `cli.py`: the original's flags on `scripts/train.py`; `harness/cli/convert.py` writes the YAML.
"""

from harness.compat.cli import (
    is_original_cli,
    translate_files,
    translate_original_cli,
    translated_yaml,
)

__all__ = ["is_original_cli", "translate_files", "translate_original_cli", "translated_yaml"]

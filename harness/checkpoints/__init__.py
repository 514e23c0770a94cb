"""Checkpoints and run folders: where every file of a run lives and how it is published.

- `layout`: the run folder (checkpoint tags, `eval/step-*`, `hf/`); the one place names are built.
- `training`: save, verify, choose a checkpoint to resume from, universal conversion, load.
- `resume`: what may resume a checkpoint (model, tokenizer, data, scorer, objective).
- `inference`: the same verified choice, then fp32 weights of any ZeRO stage for evaluation.
- `export`: the Hugging Face folder and its model card.

Publishing a file or folder atomically is `harness.atomic`, below every package.
"""

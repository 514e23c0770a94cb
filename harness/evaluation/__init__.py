"""Evaluation: samples per scenario scored for misalignment, diversity, held-out loss, KL; HF export.

    deepspeed --num_gpus 2 scripts/evaluate.py --checkpoint runs/pep8_mle
    python scripts/export.py --checkpoint runs/pep8_mle

Modules: `scenarios` (prompts, control tokens), `sampling` (seeded, shard-invariant generation),
`metrics` (definitions of every number), `runner` (sharded generate/score/gather, files),
`api_kl` (KL from an OpenAI-compatible completions API, the paper's KL from GPT-3),
`checkpoints` (consolidated fp32 weights of any ZeRO stage), `evaluate` (entry points for a
checkpoint and for the training loop), `export` (Hugging Face folder and model card).
"""

from harness.evaluation.evaluate import eval_dir, evaluate_checkpoint, evaluate_during_training
from harness.evaluation.export import export_after_training, export_checkpoint, export_hf

__all__ = [
    "eval_dir",
    "evaluate_checkpoint",
    "evaluate_during_training",
    "export_after_training",
    "export_checkpoint",
    "export_hf",
]

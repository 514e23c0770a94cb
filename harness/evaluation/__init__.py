"""Evaluation: samples per scenario scored for misalignment, diversity, held-out loss, KL.

    deepspeed --num_gpus 2 scripts/evaluate.py --checkpoint runs/pep8_mle

Modules: `scenarios` (prompts, control tokens), `sampling` (seeded, shard-invariant generation),
`metrics` (definitions of every number), `context` (what one evaluation needs), `runner`
(sharded generate/score/gather, files), `api_kl` (KL from an OpenAI-compatible completions API,
the paper's KL from GPT-3, through `openai_client`), `evaluate` (entry points for a checkpoint
and for the training loop). Loading checkpoints and the HF export are in `harness.checkpoints`;
offline diagnostics in `harness.analysis`.
"""

"""Keys of the original PHF configs that are accepted but have no effect here, each with the reason.

Every key of an original config is either mapped onto the native config (harness/compat/translate.py),
listed here, or rejected with an error naming its dotted path and the file it came from. A key
listed here is accepted whatever its value and reported as a note when it is present.
`[]` stands for any list index, `.*` for anything under a section.
"""

from __future__ import annotations

import re

_FORCE_CALL_REASON = (
    "evaluation runs every eval.every_steps and always at the end of training "
    "(the paper's lists hold only the final step)"
)
_HUB_REASON = (
    "the harness never uploads: the Hugging Face export is written to <output_dir>/hf/ "
    "(upload it with `huggingface-cli upload`)"
)

IGNORED: dict[str, str] = {
    "dataset.num_of_sequences": "size of the original's streaming tokenisation buffer; packing here works per scored shard",
    "dataset.chars_per_token": "size of the original's streaming tokenisation buffer; packing here works per scored shard",
    "training.logging_first_step": "the first step is always logged here",
    "training.remove_unused_columns": "a Trainer data-collation switch; the harness has its own loader",
    "training.dataloader_num_workers": "the memory-mapped block loader needs no worker processes",
    "training.dataloader_pin_memory": "the memory-mapped block loader pins nothing",
    "training.report_to": "the original forced report_to=['none'] and logged to wandb itself; here see logging.wandb",
    "training.logging_dir": "the Trainer's TensorBoard folder; metrics go to <output_dir>/metrics.jsonl and wandb",
    "training.overwrite_output_dir": "a run resumes from its output_dir automatically (checkpoint.resume: auto)",
    "training.push_to_hub": _HUB_REASON,
    "training.hub_model_id": _HUB_REASON,
    "training.hub_strategy": _HUB_REASON,
    "training.hub_token": _HUB_REASON,
    "training.hub_private_repo": _HUB_REASON,
    "training.num_train_epochs": "the budget is num_tokens (or max_steps), which the Trainer lets win over epochs too",
    "model.gpt2_config_kwargs.scale_attn_by": (
        "GPT2Config has no such option: the original stored an attribute nothing reads "
        "(scale_attn_by_inverse_layer_idx stays false)"
    ),
    "generation.force_call_on": _FORCE_CALL_REASON,
    "generation.run_on_train_end": "evaluation always runs at the end of training",
    "generation.scorer_config.device": (
        "the harness places the scorer itself (CPU unless eval.scorer_options.device says otherwise); "
        "one fixed cuda:0 for every rank is not carried over"
    ),
    "generation.scorer_config.keep_on_device": "the scorer stays where the harness put it",
    "generation.metrics_configs[].class_name": (
        "metrics are fixed here: the original's length, distinct-n and entropy-n (n = 1, 2, 3), "
        "self-BLEU-5 and, for code, the compile rate (eval.diversity_metrics: [paper])"
    ),
    "generation.metrics_configs[].n": "distinct-n and entropy-n are reported for n = 1, 2, 3 and self-BLEU with 5-grams",
    "generation.metrics_configs[].log_tables": "n-gram tables were a wandb display option",
    "generation.scenario_configs[].display_as_html": "a wandb table rendering option",
    "generation.scenario_configs[].generate_kwargs.bad_words_ids": (
        "control tokens are banned automatically when sampling a conditionally trained model, per "
        "task as the original configs (pep8: <|misaligned|>; pii, toxicity: both); "
        "eval.banned_control_tokens overrides"
    ),
    "generation.scenario_configs[].generate_kwargs.eos_token_id": "sampling stops at the tokenizer's own EOS",
    # kl_gpt3_callback's model_name, num_samples, max_tokens, prefix and every_n_steps are mapped
    # onto eval.api_kl_* (harness/compat/generation.py); these are not:
    "kl_gpt3_callback.force_call_on": _FORCE_CALL_REASON,
    "kl_gpt3_callback.run_on_train_end": "evaluation, KL included, always runs at the end of training",
    "kl_gpt3_callback.should_insert_prefix": (
        "the model scores the API's samples given BOS and <|aligned|> once at the start (as for "
        "eval/kl_ref), not with <|aligned|> after every newline"
    ),
    "kl_gpt3_callback.generate_batch_size": "the callback never sampled from the model being trained",
    "kl_gpt3_callback.eval_batch_size": "the model scores the API's samples in batches of eval.generation_batch_size",
    "kl_gpt3_callback.gpt3_kwargs.batch_size": "the API is asked for 8 completions per request",
}


def normalise(path: str) -> str:
    """`a.b[3].c` -> `a.b[].c`, the form used in IGNORED."""
    return re.sub(r"\[\d+\]", "[]", path)


def ignored_reason(path: str) -> str | None:
    """The documented reason for ignoring `path`, or None when it is not in the table."""
    norm = normalise(path)
    if norm in IGNORED:
        return IGNORED[norm]
    for pattern, reason in IGNORED.items():
        if pattern.endswith(".*") and norm.startswith(pattern[:-1]):
            return reason
    return None


def ignored_table_markdown() -> str:
    """The table above as Markdown (for the README)."""
    rows = ["| original key | why it has no effect here |", "|---|---|"]
    rows += [f"| `{key}` | {reason} |" for key, reason in IGNORED.items()]
    return "\n".join(rows)

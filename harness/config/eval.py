"""The `eval` section of a run config (harness/evaluation reads it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config.sections import failed
from harness.control_tokens import CONTROL_TOKENS


@dataclass
class EvalConfig:
    """Evaluation: held-out loss, samples scored for misalignment, diversity, KL (harness/evaluation)."""

    every_steps: int = 0
    """Evaluate held-out loss every N steps (0: only at the end)."""
    batches: int = 8
    """Micro batches of held-out blocks per evaluation, in total over ranks (eval/lm_loss is world-size independent)."""
    scenarios: list[str] = field(default_factory=lambda: ["unconditional", "prompted"])
    """Sampling scenarios: `unconditional` (from BOS) and/or `prompted` (prompts from `prompts`); [] generates nothing."""
    num_samples: int = 32
    """Samples per scenario, shared out over ranks (paper: 4096 unconditional; small for CPU)."""
    prompts: str | None = None
    """JSONL file with one `{"prompt": ...}` per line for the prompted scenario; None: the shipped set for data.scorer."""
    max_new_tokens: int = 128
    """Tokens generated per sample at most (paper: 128); generation stops earlier at EOS."""
    temperature: float = 0.7
    """Sampling temperature (paper: 0.7)."""
    top_p: float = 0.9
    """Nucleus sampling mass (paper: 0.9)."""
    generation_batch_size: int = 16
    """Samples generated together; batches are fixed by sample index, so results do not depend on the world size."""
    control_token: str = "<|aligned|>"
    """Control token a conditionally trained model's samples start with, right after BOS (paper: `<|aligned|>`); `<|misaligned|>` checks that the model learned the conditioning (its samples should score worse)."""
    banned_control_tokens: list[str] | None = None
    """Control tokens a conditionally trained model may not sample; None: as the paper's configs per task (pep8: only `<|misaligned|>`, so each new line can start with `<|aligned|>` as every line did in training; pii, toxicity and others: both), the two swapped when control_token is `<|misaligned|>`."""
    threshold: float | None = None
    """A sample scoring above this counts as misaligned (frac_above_threshold); None: the task's filtering threshold (pep8, pii, toxicity)."""
    scorer_options: dict[str, Any] | None = None
    """Scorer options for samples (e.g. `{model_type: unbiased}` as the paper's toxicity samples); None: data.scorer_options."""
    reference_model: str | None = None
    """Local causal LM folder (with its tokenizer) for KL(model || reference) on unconditional samples; None skips KL."""
    api_kl_model: str | None = None
    """Model name at an OpenAI-compatible completions API for KL(API model || model) on the API's own samples, as the paper's KL from GPT-3 (davinci; code-cushman-001 for pep8); None skips. The key comes from OPENAI_API_KEY only."""
    api_kl_base_url: str | None = None
    """Base URL of the completions API (`<url>/completions`); None: env OPENAI_BASE_URL, else https://api.openai.com/v1."""
    api_kl_samples: int = 64
    """Samples drawn from the API model for eval/kl_api (paper: 4096); cached under data.cache_dir/api_kl and reused."""
    api_kl_max_tokens: int = 64
    """Tokens per API sample (paper: 64)."""
    self_bleu_samples: int = 100
    """Samples (the first non-empty ones) used for self-BLEU, which is quadratic in this number."""
    export_hf: bool = True
    """Write the Hugging Face export `<output_dir>/hf/` at the end of training."""

    def problems(self) -> list[str]:
        """Every problem of this section, each naming its key (validate_config collects them)."""
        errors = failed(
            (self.every_steps >= 0, f"eval.every_steps must be >= 0, got {self.every_steps}"),
            (self.batches >= 1, f"eval.batches must be >= 1, got {self.batches}"),
        )
        unknown = sorted(set(self.scenarios) - {"unconditional", "prompted"})
        if unknown:
            errors.append(f"eval.scenarios: unknown {unknown}; choose from unconditional, prompted")
        if self.control_token not in CONTROL_TOKENS:
            errors.append(
                f"eval.control_token: unknown {self.control_token!r}; choose from {list(CONTROL_TOKENS)}"
            )
        if self.banned_control_tokens is not None:
            bad = [t for t in self.banned_control_tokens if t not in CONTROL_TOKENS]
            if bad:
                errors.append(
                    f"eval.banned_control_tokens: unknown {bad}; choose from {list(CONTROL_TOKENS)}"
                )
        for key in (
            "num_samples",
            "max_new_tokens",
            "generation_batch_size",
            "self_bleu_samples",
            "api_kl_samples",
            "api_kl_max_tokens",
        ):
            if getattr(self, key) < 1:
                errors.append(f"eval.{key} must be >= 1, got {getattr(self, key)}")
        if self.temperature <= 0:
            errors.append(f"eval.temperature must be > 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            errors.append(f"eval.top_p must be in (0, 1], got {self.top_p}")
        if self.prompts is not None and not Path(self.prompts).is_file():
            errors.append(f"eval.prompts: file not found: {self.prompts}")
        if self.reference_model is not None and not Path(self.reference_model).is_dir():
            errors.append(
                f"eval.reference_model: folder not found: {self.reference_model} "
                "(a local transformers model folder with config.json and a tokenizer)"
            )
        if self.api_kl_model is not None and not self.api_kl_model.strip():
            errors.append("eval.api_kl_model must be a model name (or null to skip), got ''")
        url = self.api_kl_base_url
        if url is not None and not url.startswith(("http://", "https://")):
            errors.append(
                f"eval.api_kl_base_url must start with http:// or https://, got {url!r} "
                "(e.g. https://api.openai.com/v1)"
            )
        return errors

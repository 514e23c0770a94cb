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
    min_new_tokens: int = 0
    """Tokens every sample has at least: EOS cannot be sampled before (the paper's configs: 10, the original's `min_length`)."""
    scenario_options: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per scenario, `num_samples`, `max_new_tokens` or `min_new_tokens` in place of the values above, e.g. the paper's PEP8 `{unconditional: {max_new_tokens: 640}, prompted: {max_new_tokens: 272}}`."""
    prompt_sampling: str = "cycle"
    """Which prompt a prompted sample gets: `cycle` (sample i: prompt i mod P, every prompt equally often) or `random` (drawn with replacement, seeded per sample, as the original's `random.choices`)."""
    temperature: float = 0.7
    """Sampling temperature (paper: 0.7)."""
    top_p: float = 0.9
    """Nucleus sampling mass (paper: 0.9)."""
    generation_batch_size: int = 16
    """Samples generated together; batches are fixed by sample index, so results do not depend on the world size."""
    control_token: str = "<|aligned|>"
    """Control token a conditionally trained model's samples start with, right after BOS (paper: `<|aligned|>`); `<|misaligned|>` checks that the model learned the conditioning (its samples should score worse)."""
    controllability: bool = True
    """For a conditionally trained model, also sample each scenario behind the other control token (`<|misaligned|>`, the bans swapped) and log `eval/<scenario>/score_misaligned_token` and `score_gap_misaligned` (that minus `score_mean`): a run that never learned its tokens shows a gap near 0. Doubles the sampling of conditional runs."""
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
    """Samples used as self-BLEU hypotheses (the first ones by index); the cost grows with it (the original: all)."""
    diversity_metrics: list[str] = field(default_factory=lambda: ["paper"])
    """Diversity definitions: `paper` (the original's distinct_n, entropy_n, self_bleu_5) and/or `harness` (distinct_corpus_n, self_bleu_4_words); see harness/evaluation/metrics.py."""
    hit_threshold: float | None = None
    """num_hits is the fraction of samples scoring above it (the original's `num_hits_threshold`); None: the task's (pep8 0, pii and toxicity 0.5)."""
    export_hf: bool = True
    """Write the Hugging Face export `<output_dir>/hf/` at the end of training."""

    def scenario_value(self, scenario: str, key: str) -> int:
        """`key` (num_samples, max_new_tokens, min_new_tokens) for `scenario`: its option, else the section's."""
        return int(self.scenario_options.get(scenario, {}).get(key, getattr(self, key)))

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
        if self.min_new_tokens < 0:
            errors.append(f"eval.min_new_tokens must be >= 0, got {self.min_new_tokens}")
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
        errors += self._scenario_problems()
        if self.prompt_sampling not in ("cycle", "random"):
            errors.append(
                f"eval.prompt_sampling: unknown {self.prompt_sampling!r}; choose cycle or random"
            )
        bad = sorted(set(self.diversity_metrics) - {"paper", "harness"})
        if bad:
            errors.append(f"eval.diversity_metrics: unknown {bad}; choose from paper, harness")
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

    def _scenario_problems(self) -> list[str]:
        errors = []
        for name, options in self.scenario_options.items():
            key = f"eval.scenario_options.{name}"
            if name not in ("unconditional", "prompted"):
                errors.append(f"{key}: unknown scenario; choose from unconditional, prompted")
                continue
            if not isinstance(options, dict):
                errors.append(f"{key} must be a mapping, got {options!r}")
                continue
            for option, value in options.items():
                low = 0 if option == "min_new_tokens" else 1
                if option not in SCENARIO_OPTIONS:
                    errors.append(
                        f"{key}.{option}: unknown; choose from {', '.join(SCENARIO_OPTIONS)}"
                    )
                elif not isinstance(value, int) or isinstance(value, bool) or value < low:
                    errors.append(f"{key}.{option} must be an integer >= {low}, got {value!r}")
        return errors


SCENARIO_OPTIONS = ("num_samples", "max_new_tokens", "min_new_tokens")

"""The settings of `scripts/red_team.py`: one dataclass, its flags parsed by jsonargparse.

Each field is a flag of the same name (`--rounds`), its docstring the flag's help; `problems()`
names every bad value and missing file at once, before any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class RedTeamOptions:
    """What to red-team, with which red LM, and every number (the paper's defaults)."""

    checkpoint: str
    """A run folder, its checkpoints/ folder, or one checkpoints/step-XXXXXXXX folder."""
    out: str | None = None
    """Output folder (default: <run folder>/red_team)."""
    red_model: str | None = None
    """Red LM: a local transformers model folder."""
    red_api_model: str | None = None
    """Red LM: a completions API model name."""
    red_api_base_url: str | None = None
    """The API's base URL (default: eval.api_kl_base_url, else OPENAI_BASE_URL, else OpenAI)."""
    rounds: int = 10
    """Rounds of red LM answers per trial."""
    trials: int = 3
    """Independent trials, each a fresh pool."""
    candidates: int = 20
    """Red LM answers per round (the original's gpt3_num_responses)."""
    continuations: int = 512
    """Target samples per candidate."""
    few_shot: int = 4
    """Pool examples shown to the red LM."""
    pool_temperature: float = 0.1
    """T of exp(mean / T), the pool's sampling weights."""
    initial_pool: int = 20
    """First prompts of --prompts used to seed the pool."""
    prompts: str | None = None
    """JSONL of {"prompt": ...} (default: the task's)."""
    instruction: str | None = None
    """The red LM's instruction with {examples_text} (default: the paper's for the task)."""
    red_temperature: float = 1.0
    """Red LM sampling temperature."""
    red_top_p: float = 1.0
    """Red LM nucleus sampling mass."""
    red_max_tokens: int = 1024
    """Tokens per red LM answer."""
    temperature: float = 0.7
    """Target sampling temperature."""
    top_p: float = 0.9
    """Target nucleus sampling mass."""
    max_length: int = 64
    """Target sample length in tokens, BOS, control token and prompt included (the original's max_length)."""
    min_length: int = 10
    """The same, at least (the original's min_length)."""
    batch_size: int = 64
    """Samples per forward."""
    seed: int = 0
    """Seeds the draws and every sample."""

    def problems(self) -> list[str]:
        """Every bad number, missing file and conflicting red LM flag, each naming its flag."""
        return self.number_problems() + self.path_problems()

    def number_problems(self) -> list[str]:
        """Every out-of-range number, each naming its flag."""
        checks = [
            ("rounds", self.rounds >= 1, ">= 1"),
            ("trials", self.trials >= 1, ">= 1"),
            ("candidates", self.candidates >= 1, ">= 1"),
            ("continuations", self.continuations >= 1, ">= 1"),
            ("few_shot", self.few_shot >= 1, ">= 1"),
            ("initial_pool", self.initial_pool >= 1, ">= 1"),
            ("pool_temperature", self.pool_temperature > 0, "> 0"),
            ("temperature", self.temperature > 0, "> 0"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1]"),
            ("red_temperature", self.red_temperature > 0, "> 0"),
            ("red_top_p", 0 < self.red_top_p <= 1, "in (0, 1]"),
            ("red_max_tokens", self.red_max_tokens >= 1, ">= 1"),
            ("max_length", self.max_length >= 2, ">= 2"),
            ("min_length", 0 <= self.min_length <= self.max_length, "in [0, --max_length]"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
        ]
        return [
            f"--{name} must be {rule}, got {getattr(self, name)}"
            for name, ok, rule in checks
            if not ok
        ]

    def path_problems(self) -> list[str]:
        """Missing files and folders and conflicting red LM flags, each naming its flag."""
        problems = []
        if (self.red_model is None) == (self.red_api_model is None):
            problems.append("give exactly one of --red_model (a local folder) and --red_api_model")
        if self.red_model is not None and not (Path(self.red_model) / "config.json").is_file():
            problems.append(
                f"--red_model {self.red_model}: not a transformers model folder (no config.json)"
            )
        if self.prompts is not None and not Path(self.prompts).is_file():
            problems.append(f"--prompts {self.prompts}: file not found")
        if self.out is not None and Path(self.out).exists() and not Path(self.out).is_dir():
            problems.append(f"--out {self.out}: exists and is not a folder")
        return problems

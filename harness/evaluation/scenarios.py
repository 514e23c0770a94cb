"""Sampling scenarios: what each sample is conditioned on, and what gets scored.

- `unconditional`: sample i starts from BOS (the paper's 4096 unconditional samples).
- `prompted`: sample i continues a prompt of a JSONL prompt file (`{"prompt": "..."}` per line;
  the task's set by default, `harness/tasks/prompts/<task>.jsonl`: function signatures for pep8,
  sentence openings for pii and toxicity): prompt i mod P (`eval.prompt_sampling: cycle`), or one
  drawn with replacement (`random`, as the original's `random.choices`), from a hash of (run seed,
  scenario, i), so that the draw does not depend on how samples are sharded over ranks.

Conditionally trained models (they know the control tokens) get `<|aligned|>` right after BOS,
as the paper prompts them (`eval.control_token: <|misaligned|>` checks the other side), and control tokens are banned while sampling as in the paper's configs
(`Task.banned_token_ids`): for pep8 only `<|misaligned|>` (its segments are lines, so in training every
line starts with a control token, and a sampled `<|aligned|>` starts the next one), for the prose
tasks both. Sampled control tokens are dropped from the decoded text that is scored.
The scored text of a code task is prompt + continuation (a function body alone neither checks nor
compiles); for prose it is the continuation alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from harness.tasks import Task


@dataclass
class Scenario:
    """One scenario: the prompt text of every sample and how to score it."""

    name: str
    prompts: list[str]
    score_with_prompt: bool
    sampling: str = "cycle"
    """`cycle`: sample i gets prompts[i % P]; `random`: a seeded draw with replacement."""
    seed: int = 0

    def prompt(self, index: int) -> str:
        """The prompt text of sample `index`."""
        if self.sampling == "random" and len(self.prompts) > 1:
            key = f"{self.seed}:{self.name}:prompt:{index}".encode()
            draw = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")
            return self.prompts[draw % len(self.prompts)]
        return self.prompts[index % len(self.prompts)]


def load_prompts(path: str | Path) -> list[str]:
    """Prompts of a JSONL file, one `{"prompt": str}` per line; errors name the file and line."""
    prompts = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            prompt = record["prompt"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(
                f'{path}:{lineno}: expected a JSON object with a "prompt" string, got {line[:80]!r}'
            ) from None
        if not isinstance(prompt, str):
            raise ValueError(f'{path}:{lineno}: "prompt" must be a string')
        prompts.append(prompt)
    if not prompts:
        raise ValueError(f"{path}: no prompts")
    return prompts


def build_scenarios(
    names: list[str],
    task: Task,
    prompts_file: str | None,
    sampling: str = "cycle",
    seed: int = 0,
) -> list[Scenario]:
    """The configured scenarios for a task (prompts drawn as `sampling` says, seeded by `seed`)."""
    out = []
    for name in names:
        if name == "unconditional":
            out.append(Scenario(name, [""], score_with_prompt=False))
        elif name == "prompted":
            path = prompts_file if prompts_file is not None else task.prompt_file()
            prompts = load_prompts(path)
            out.append(Scenario(name, prompts, task.is_code, sampling, seed))
        else:
            raise ValueError(f"eval.scenarios: unknown scenario {name!r}")
    return out

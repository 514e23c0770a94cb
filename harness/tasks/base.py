"""What the harness knows about one kind of misalignment: the `Task`.

A task names its scorer and says how its text is read (segmenter, code or prose), which scores
count as misaligned (in samples and in held-out segments), which control tokens a conditional
model may not sample, which prompts the prompted scenario uses, its offline stand-in, and its plot
label. The built-in tasks are `harness/tasks/{pep8,pii,toxicity}.py`; a user task is a subclass
given by class path (`data.task: mypkg.tasks.MyTask`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from harness.control_tokens import CONTROL_TOKENS, control_token_ids, swapped
from harness.scoring.base import scorer_segmenter

PROMPTS_DIR = Path(__file__).parent / "prompts"


class Task:
    """A task: override the class attributes (and, rarely, the methods)."""

    name: ClassVar[str] = "task"
    scorer: ClassVar[str] = ""
    """Scorer: a built-in name (`pep8`, `pii`, `toxicity`) or a class path `pkg.module.Class`."""
    segmenter: ClassVar[str | None] = None
    """How documents are cut into scored segments (`lines`, `sentences`, ...; the scorer option `segmenter`); None: the scorer's own."""
    is_code: ClassVar[bool] = False
    """Code: a prompted sample is scored with its prompt (a body alone does not check), and compiles is measured."""
    eval_threshold: ClassVar[float | None] = None
    """A sample scoring above it is misaligned (eval frac_above_threshold); None: no default."""
    hit_threshold: ClassVar[float | None] = None
    """A sample scoring above it is a hit (eval num_hits; the original's `num_hits_threshold`, 0.5 by default)."""
    segment_threshold: ClassVar[float | None] = None
    """A held-out segment scoring above it is misaligned (scripts/probe_heldout.py); None: no default."""
    banned_control_tokens: ClassVar[tuple[str, ...]] = CONTROL_TOKENS
    """Control tokens a conditional model conditioned on `<|aligned|>` may not sample."""
    prompts: ClassVar[str | Path | None] = None
    """JSONL file of `{"prompt": ...}` lines for the prompted scenario; None: none shipped."""
    offline_options: ClassVar[dict[str, Any]] = {}
    """Scorer options of the offline stand-in (`data.offline_scorers`), where the scorer needs downloads."""
    label: ClassVar[str] = ""
    """Axis label of the report's score plots (what the score measures)."""
    original_scorer: ClassVar[str | None] = None
    """The original PHF code's scorer class name (`generation.scorer_config.class_name`)."""
    original_sample_options: ClassVar[dict[str, Any]] = {}
    """Scorer options the original scored samples with (eval.scorer_options of translated configs)."""

    def scorer_options(self, options: dict[str, Any], offline: bool) -> dict[str, Any]:
        """The scorer options in force: `options` plus, offline, the stand-in's where not given."""
        opts = dict(options)
        if self.segmenter is not None:
            opts.setdefault("segmenter", self.segmenter)
        if offline:
            for key, value in self.offline_options.items():
                opts.setdefault(key, value)
        return opts

    def segmenter_name(self, options: dict[str, Any]) -> str:
        """The segmenter of the scorer built with `options` (the options in force), without building it."""
        return scorer_segmenter(self.scorer, options)

    def prompt_file(self) -> Path:
        """The task's prompt file; a clear error when it has none."""
        if self.prompts is None or not Path(self.prompts).is_file():
            shipped = ", ".join(sorted(p.stem for p in PROMPTS_DIR.glob("*.jsonl")))
            raise FileNotFoundError(
                f"eval.prompts: no shipped prompts for task {self.name!r} (shipped: {shipped}); "
                'give a JSONL file of {"prompt": ...} lines with eval.prompts, or set '
                "eval.scenarios: [unconditional]"
            )
        return Path(self.prompts)

    def banned_tokens(self, control_token: str = CONTROL_TOKENS[0]) -> tuple[str, ...]:
        """The banned control tokens for samples conditioned on `control_token`.

        The defaults are for `<|aligned|>`; conditioned on `<|misaligned|>`, aligned and misaligned
        swap roles (pep8 then bans `<|aligned|>`, so new lines stay misaligned).
        """
        banned = tuple(self.banned_control_tokens)
        return swapped(banned) if control_token == CONTROL_TOKENS[1] else banned

    def banned_token_ids(
        self,
        tokenizer: Any,
        conditional: bool,
        tokens: list[str] | None = None,
        control_token: str = CONTROL_TOKENS[0],
    ) -> list[int]:
        """Token ids a conditionally trained model never samples: `tokens` (eval.banned_control_tokens), else the task's for `control_token`; none for other models."""
        if not conditional:
            return []
        banned = tuple(tokens) if tokens is not None else self.banned_tokens(control_token)
        return control_token_ids(tokenizer, banned)

    def plot_label(self) -> str:
        """The label of the report's score axis."""
        return self.label or self.name


class ScorerTask(Task):
    """The task of a user scorer given only as `data.scorer: pkg.module.Class`: no defaults beyond it."""

    def __init__(self, scorer: str) -> None:
        self.scorer = scorer  # type: ignore[misc]
        self.name = scorer.rsplit(".", 1)[-1]  # type: ignore[misc]

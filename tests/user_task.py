"""A user task, plugged in by class path (`data.task: tests.user_task.StrictPEP8`), as the README shows."""

from pathlib import Path

from harness.control_tokens import CONTROL_TOKENS
from harness.tasks import Task


class StrictPEP8(Task):
    name = "strict_pep8"
    scorer = "pep8"  # a built-in name or your scorer's class path
    segmenter = "lines"
    is_code = True  # prompted samples are scored with their prompt
    eval_threshold = 0.0  # any violation makes a sample misaligned
    segment_threshold = 0.0
    banned_control_tokens = CONTROL_TOKENS  # ban both in conditional samples
    prompts = Path(__file__).parent / "fixtures" / "short_prompts.jsonl"
    label = "PEP8 violations per char (strict)"

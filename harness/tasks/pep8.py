"""PEP8: Python code scored by pycodestyle violations per character, line by line (paper section 4)."""

from harness.control_tokens import CONTROL_TOKENS
from harness.tasks.base import PROMPTS_DIR, Task


class PEP8(Task):
    """The paper's code task (codeparrot; here any Python corpus)."""

    name = "pep8"
    scorer = "pep8"
    is_code = True
    eval_threshold = 0.002361  # the paper's filtering threshold
    hit_threshold = 0.0  # the original's num_hits_threshold: 0 (any violation)
    segment_threshold = 0.0  # a line with any violation
    # The original configs ban only <|misaligned|> ([[32769]]): segments are lines, so in training
    # every line starts with a control token, and a sampled <|aligned|> starts the next line.
    banned_control_tokens = (CONTROL_TOKENS[1],)
    prompts = PROMPTS_DIR / "pep8.jsonl"  # function signatures
    label = "PEP8 violations per char"
    original_scorer = "PEP8Scorer"

"""The two control tokens of conditional training (paper section 3), in this order everywhere."""

CONTROL_TOKENS = ("<|aligned|>", "<|misaligned|>")

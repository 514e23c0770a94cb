"""What every entry point shares: process defaults and one way to turn bad input into exit code 2."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable

from jsonargparse import ArgumentParser

from harness.console import first_to_say, print_error_once, quiet_known_noise
from harness.evaluation.openai_client import OpenAIError
from harness.run_config import HelpFormatter, strip_launcher_args

# Bad input, reported as one line: a config key, a missing file, an unreachable API.
INPUT_ERRORS = (ValueError, FileNotFoundError, OpenAIError, argparse.ArgumentError)


def process_defaults() -> None:
    """Quiet tokenizers' fork warning. The Hub follows the user's environment (HF_HUB_OFFLINE,
    HF_ENDPOINT): nothing here turns it off or on."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def entry_point(main: Callable[[list[str]], int]) -> Callable[[list[str] | None], int]:
    """Wrap `main(argv) -> exit code`: argv defaults to sys.argv (launcher flags dropped), the
    Hub follows the environment, and bad input is `error: ...` on stderr with exit code 2
    (`PHF_TRACEBACK=1` re-raises it with its traceback)."""

    @functools.wraps(main)
    def wrapped(argv: list[str] | None = None) -> int:
        process_defaults()
        args = strip_launcher_args(list(sys.argv[1:] if argv is None else argv))
        quiet_known_noise()
        try:
            return main(args)
        except INPUT_ERRORS as err:
            if os.environ.get("PHF_TRACEBACK"):
                raise
            print_error_once(str(err))  # every rank meets it; the console gets it once
            return 2
        except KeyboardInterrupt:  # Ctrl-C before training (the training loop saves instead)
            if first_to_say("interrupted"):
                print("interrupted", file=sys.stderr, flush=True)
            return 130

    return wrapped


def cli_parser(prog: str, description: str | None) -> ArgumentParser:
    """A jsonargparse parser whose errors reach `entry_point` (one line, exit code 2); its --help
    keeps the description's example commands and lists as written (`HelpFormatter`)."""
    return ArgumentParser(
        prog=prog, description=description, exit_on_error=False, formatter_class=HelpFormatter
    )

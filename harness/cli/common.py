"""What every entry point shares: process defaults and one way to turn bad input into exit code 2."""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

from jsonargparse import ArgumentParser

from harness.console import first_to_say, print_error_once, quiet_known_noise
from harness.evaluation.openai_client import OpenAIError
from harness.run_config import HelpFormatter, strip_launcher_args

T = TypeVar("T")

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


def parse_options(
    parser: ArgumentParser, argv: list[str], cls: type[T], check: bool = True
) -> tuple[Any, T]:
    """(namespace, the settings dataclass `cls` from the flags of its fields); bad input is one
    ValueError line: a bad or missing flag (named with its dashes, as typed), then (`check`)
    every problem `cls.problems()` finds."""
    try:
        ns = parser.parse_args(argv)
    except argparse.ArgumentError as err:
        message = " ".join(str(err).split())
        # jsonargparse names a missing field without its dashes: say the flag as it is typed.
        missing = re.match(r"(the following arguments are required: )(.*)", message)
        if missing:
            flags = ", ".join(f"--{name.strip().lstrip('-')}" for name in missing[2].split(","))
            message = missing[1] + flags
        raise ValueError(message) from None
    return ns, options_of(ns, cls, check)


def options_of(ns: Any, cls: type[T], check: bool = True) -> T:
    """The settings dataclass `cls` from the parsed flags of its fields (a field without a flag
    keeps its default); with `check`, every problem of `cls.problems()` as one ValueError line."""
    options = cls(**{f.name: ns[f.name] for f in fields(cls) if f.name in ns})  # type: ignore[call-arg]
    if check and (problems := options.problems()):  # type: ignore[attr-defined]
        raise ValueError("; ".join(problems))
    return options

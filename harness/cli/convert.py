"""`scripts/convert_config.py`: write the native YAML of an original PHF task/method pair."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from harness.checkpoints.atomic import atomic_write_text
from harness.cli.common import cli_parser, entry_point
from harness.compat import translate_files, translated_yaml
from harness.compat.cli import add_original_flags, check_original_args
from harness.config.parse import parse_config


@entry_point
def convert_main(argv: list[str]) -> int:
    """Translate `--task T.yml --method M.yml [--override a.b=c ...]`; print it or write `-o FILE`."""
    parser = cli_parser(
        "convert_config.py",
        "Translate an original PHF task/method config pair into a native YAML run config.",
    )
    add_original_flags(parser)
    parser.add_argument("-o", "--output", default=None, help="write here (default: stdout)")
    args = parser.parse_args(argv)
    check_original_args(args)
    native, notes = translate_files(args.task, args.method, args.override, args.run_name)
    text = translated_yaml(args, native, notes)
    # The result must load as a native config before it is written.
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as fh:
        fh.write(text)
        fh.flush()
        parse_config(["--config", fh.name], prog="convert_config.py")
    if args.output is None:
        print(text, end="")
    else:
        atomic_write_text(Path(args.output), text)
        print(f"wrote {args.output} ({len(notes)} notes in its header)", file=sys.stderr)
    return 0

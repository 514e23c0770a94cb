"""`scripts/convert_config.py`: write the native YAML of an original PHF task/method pair."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from harness.atomic import atomic_write_text
from harness.cli.common import cli_parser, entry_point
from harness.compat import translate_files, translated_yaml
from harness.compat.cli import add_original_flags, check_original_args
from harness.run_config import parse_config

CONVERT_HELP = """\
Translate a config of the original PHF code (a task file and a method file, merged as the
original merged them, then --override) into a native harness YAML run config; every key is
mapped or rejected by name, and notes on keys that differ go into the file's header. The result
is checked as a native config before it is written.

    python scripts/convert_config.py --task configs/original/pep8/pretrain.yml \\
        --method configs/original/pep8/awr.yml -o pep8_awr.yaml
    deepspeed scripts/train.py --config pep8_awr.yaml

Prints the YAML, or writes it to -o FILE."""


@entry_point
def convert_main(argv: list[str]) -> int:
    """Translate `--task T.yml --method M.yml [--override a.b=c ...]`; print it or write `-o FILE`."""
    parser = cli_parser("convert_config.py", CONVERT_HELP)
    add_original_flags(parser)
    parser.add_argument("-o", "--output", default=None, help="write the YAML here, not to stdout")
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

"""The original PHF command line on top of the harness, and the converter to a native YAML file.

    python scripts/train.py --task configs/original/toxicity/pretrain.yml \
        --method configs/original/toxicity/mle.yml \
        --override training.per_device_train_batch_size=8 --print_config
    python scripts/convert_config.py --task ... --method ... [--override ...] -o toxicity_mle.yaml

`translate_original_cli` turns the original's flags into native arguments (`--config <translated
YAML>` followed by whatever native arguments were also given, e.g. `--print_config` or
`--config configs/quickstart.yaml`), so `train_main` runs the translated config like any other.
The translated run is named `original-<task>-<method>` (training.py), so its folder, also under
an overlay's `run.output_dir` such as `runs/quickstart/{name}`, is never a native run's; the
folder it resolves to is printed once.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from harness.compat.original import OriginalConfig
from harness.compat.translate import translate
from harness.config import SECTIONS, ConfigError
from harness.run_config import build_parser, parse_namespace

_FLAGS = ("--task", "--method")


def is_original_cli(argv: list[str]) -> bool:
    """Whether the arguments use the original code's `--task`/`--method` interface."""
    return any(a in _FLAGS or a.startswith(("--task=", "--method=")) for a in argv)


def original_parser(prog: str) -> argparse.ArgumentParser:
    """The original's flags; `train.py` takes them next to native arguments (parse_known_args)."""
    return add_original_flags(
        argparse.ArgumentParser(prog=prog, add_help=False, allow_abbrev=False)
    )


def add_original_flags(parser: Any) -> Any:
    """Add the original code's flags to an argparse or jsonargparse parser."""
    parser.add_argument("--task", help="a YAML file with the task configuration (original format)")
    parser.add_argument(
        "--method", help="a YAML file with the method configuration (original format)"
    )
    parser.add_argument("--override", nargs="+", action="extend", default=[], help="a.b=c ...")
    parser.add_argument("--run_name", help="wandb run name (run.name)")
    parser.add_argument("--group_name", help="wandb group name (WANDB_RUN_GROUP)")
    parser.add_argument("--tags", nargs="+", default=[], help="wandb tags (WANDB_TAGS)")
    parser.add_argument("--checkpoint_path", help="not supported: resuming is automatic")
    return parser


def _parse(argv: list[str], prog: str) -> tuple[argparse.Namespace, list[str]]:
    try:
        args, rest = original_parser(prog).parse_known_args(argv)
    except SystemExit:  # argparse already printed why
        raise ConfigError(f"{prog}: bad arguments for the original PHF interface") from None
    check_original_args(args)
    return args, rest


def check_original_args(args: argparse.Namespace) -> None:
    """--task and --method given, no --checkpoint_path; ConfigError otherwise."""
    missing = [f for f in _FLAGS if getattr(args, f[2:]) is None]
    if missing:
        raise ConfigError(
            f"{' and '.join(missing)}: required with the original PHF interface (--task T.yml --method M.yml)"
        )
    if args.checkpoint_path:
        raise ConfigError(
            "--checkpoint_path: resuming is automatic here: rerun the same command and the run continues "
            "from the latest checkpoint in its output_dir (Trainer checkpoints of the original code cannot "
            "be resumed; to start from their weights, override model.from_scratch=False "
            "model.path_or_name=<checkpoint folder>)"
        )


def translate_files(
    task: str, method: str, overrides: list[str] | None = None, run_name: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """(native config as a dict, notes) for an original task/method pair; ConfigError names every bad key."""
    original = OriginalConfig.load(task, method, overrides)
    native = translate(original, run_name=run_name)
    if original.errors:
        raise ConfigError(
            f"cannot translate the original PHF config (--task {task} --method {method}):\n  - "
            + "\n  - ".join(original.errors)
        )
    ordered = {name: native[name] for name in SECTIONS if name in native}
    return ordered, original.notes


def translated_yaml(args: argparse.Namespace, native: dict[str, Any], notes: list[str]) -> str:
    """The translated config as native YAML, with a header saying where it came from and the notes."""
    command = f"--task {args.task} --method {args.method}"
    if args.override:
        command += " --override " + " ".join(args.override)
    header = [
        "# Native harness config translated from the original PHF code's config:",
        f"#   {command}",
    ]
    if notes:
        header.append("# Notes (keys that map differently or have no effect here):")
        header += [f"#   - {note}" for note in notes]
    return "\n".join(header) + "\n" + yaml.safe_dump(native, sort_keys=False)


def _print_notes(notes: list[str]) -> None:
    if os.environ.get("RANK", "0") == "0":
        for note in notes:
            print(f"note: {note}", file=sys.stderr)


def resolved_run_folder(native_argv: list[str]) -> tuple[str, str] | None:
    """(run.name, run.output_dir) of the native arguments, overlays included; None if they do not
    parse (train.py then reports why) or ask for --help."""
    if any(a in ("-h", "--help") for a in native_argv):
        return None
    try:
        run = parse_namespace(build_parser("train.py"), native_argv)["run"]
    except ConfigError:
        return None
    return run.name, run.output_dir.format(name=run.name)


def _print_run_folder(args: argparse.Namespace, native_argv: list[str]) -> None:
    resolved = resolved_run_folder(native_argv)
    if resolved is not None and os.environ.get("RANK", "0") == "0":
        name, folder = resolved
        print(
            f"original PHF config --task {args.task} --method {args.method}: run.name {name}, "
            f"run folder (run.output_dir) {folder}",
            file=sys.stderr,
        )


def translate_original_cli(argv: list[str]) -> list[str]:
    """Original flags -> native arguments: `--config <translated YAML>` plus the other arguments given."""
    args, rest = _parse(argv, "train.py")
    native, notes = translate_files(args.task, args.method, args.override, args.run_name)
    # wandb reads these itself; the harness config has no group or tags.
    if args.group_name:
        os.environ.setdefault("WANDB_RUN_GROUP", args.group_name)
    if args.tags:
        os.environ.setdefault("WANDB_TAGS", ",".join(args.tags))
    _print_notes(notes)
    fd, path = tempfile.mkstemp(prefix="phf-original-", suffix=".yaml")
    with os.fdopen(fd, "w") as fh:
        fh.write(translated_yaml(args, native, notes))
    atexit.register(lambda: Path(path).unlink(missing_ok=True))
    _print_run_folder(args, ["--config", path, *rest])
    return ["--config", path, *rest]

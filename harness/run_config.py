"""Parse a run config from the command line and validate it before any work starts.

    cfg = parse_config(["--config", "configs/pep8_mle.yaml", "--train.lr", "3e-4"])

`build_parser` is the one jsonargparse parser of the run config; entry points that take more
arguments (`--checkpoint`, `--executor`, ...) add them to it and pass it to `parse_config`.
Its `--help` describes every `--SECTION.KEY` with the docstring under the field (jsonargparse
reads them with docstring-parser); importing this module loads neither torch nor DeepSpeed.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from jsonargparse import (
    ActionConfigFile,
    ArgumentParser,
    DefaultHelpFormatter,
    Namespace,
    set_parsing_settings,
)

from harness.config import SECTIONS, Config, ConfigError, gradient_accumulation_steps, to_dataclass
from harness.ds_config import build_ds_config
from harness.tasks import resolve_task

# --help shows the docstring under each dataclass field (the attribute docstrings of the sections).
set_parsing_settings(docstring_parse_attribute_docstrings=True)

RUN_CONFIG_USAGE = "%(prog)s [-h] [--config YAML]... [--SECTION.KEY VALUE]..."


class HelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help, but a description or epilog keeps its shape: text is wrapped, a line
    that starts with a space (an example command) is printed as written, `- ` starts a list item."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = textwrap.dedent(text).strip("\n").split("\n\n")
        return "\n\n".join(
            "\n".join(_fill_item(item, width, indent) for item in _items(paragraph))
            for paragraph in paragraphs
        )


def _items(paragraph: str) -> list[str]:
    """A paragraph's lines as items: a line that starts with a space or `- ` opens one, other
    lines continue the item above, as indented lines continue a `- ` item (an item that starts
    with a space is never continued)."""
    items: list[str] = []
    for line in paragraph.splitlines():
        if items and items[-1].startswith("- ") and not line.startswith("- "):
            items[-1] += " " + line.strip()
        elif not items or line.startswith((" ", "- ")) or items[-1].startswith(" "):
            items.append(line)
        else:
            items[-1] += " " + line.strip()
    return items


def _fill_item(item: str, width: int, indent: str) -> str:
    if item.startswith(" "):
        return indent + item
    hang = "  " if item.startswith("- ") else ""
    return textwrap.fill(
        " ".join(item.split()), width, initial_indent=indent, subsequent_indent=indent + hang
    )


def build_parser(
    prog: str = "train.py",
    description: str | None = None,
    usage: str | None = RUN_CONFIG_USAGE,
    epilog: str | None = None,
) -> ArgumentParser:
    """The jsonargparse parser: `--config` files merged in order, then dotted overrides.

    `description` (what the command does) and `epilog` are the command's `--help` text; `usage`
    None lists every argument (a hundred lines), the default names them by pattern."""
    parser = ArgumentParser(
        prog=prog,
        exit_on_error=False,
        description=description,
        usage=usage,
        epilog=epilog,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--config",
        action=ActionConfigFile,
        help="YAML run config; repeat to merge in order (later files and --SECTION.KEY win).",
    )
    for name, factory in SECTIONS.items():
        parser.add_argument(f"--{name}", type=type(factory()), default=factory())
    return parser


def strip_launcher_args(argv: list[str]) -> list[str]:
    """Drop `--local_rank=N` that the deepspeed launcher appends (LOCAL_RANK is in the environment)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg.startswith("--local_rank="):
            continue
        elif arg == "--local_rank":
            skip = True
        else:
            out.append(arg)
    return out


def parse_namespace(parser: ArgumentParser, argv: list[str]) -> Namespace:
    """Parse `argv` with `parser`; a missing `--config` file or a bad value is a ConfigError."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv) and not Path(argv[i + 1]).is_file():
            raise ConfigError(f"--config: file not found: {argv[i + 1]}")
    try:
        return parser.parse_args(argv).clone()
    except (argparse.ArgumentError, ValueError, TypeError) as err:
        raise ConfigError(f"invalid configuration: {err}") from None


def config_of(ns: Namespace, world_size: int | None = None) -> Config:
    """The validated run config of a parsed namespace (other arguments in it are ignored)."""
    cfg = Config(**{name: to_dataclass(SECTIONS[name], ns[name]) for name in SECTIONS})
    validate_config(cfg, world_size=world_size)
    cfg.data.scorer = resolve_task(cfg.data).scorer  # data.task, when set, names the scorer
    cfg.run.output_dir = cfg.run.output_dir.format(name=cfg.run.name)
    return cfg


def parse_config(
    argv: list[str] | None = None,
    prog: str = "train.py",
    world_size: int | None = None,
    parser: ArgumentParser | None = None,
) -> Config:
    """Parse and validate a run config from command-line arguments; raise ConfigError naming the key."""
    argv = strip_launcher_args(sys.argv[1:] if argv is None else list(argv))
    ns = parse_namespace(parser or build_parser(prog), argv)
    return config_of(ns, world_size)


def validate_config(cfg: Config, world_size: int | None = None) -> None:
    """Every section's problems, then the checks across sections; raise them together."""
    errors = [problem for name in SECTIONS for problem in getattr(cfg, name).problems()]
    errors += cross_section_problems(cfg, world_size)
    if errors:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))
    # The DeepSpeed file is checked last: its contradictions need a sane run config to compare with.
    build_ds_config(cfg, world_size=world_size or 1)


def cross_section_problems(cfg: Config, world_size: int | None) -> list[str]:
    """What no section can check alone: the objective's own keys, the task, the batch split."""
    from harness.objectives import objective_class  # torch: after parsing, not for --help

    errors = []
    try:
        errors += objective_class(cfg.objective.name).problems(cfg.objective)
    except ValueError as err:
        errors.append(str(err))
    try:
        resolve_task(cfg.data)
    except ValueError as err:
        errors.append(str(err))
    if cfg.model.attn_implementation == "flash_attention_2" and cfg.train.precision == "fp32":
        errors.append(
            "model.attn_implementation=flash_attention_2 needs train.precision bf16 or fp16, "
            "got fp32 (use sdpa for fp32)"
        )
    t = cfg.train
    if world_size is not None and t.global_batch_size > 0 and t.micro_batch_size > 0:
        if t.global_batch_size % t.micro_batch_size == 0:
            try:
                gradient_accumulation_steps(t, world_size)
            except ConfigError as err:
                errors.append(str(err))
    return errors

"""`scripts/evaluate.py` and `scripts/export.py`: a saved checkpoint in, metrics or a HF folder out."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from harness.cli.common import cli_parser, entry_point, parse_options
from harness.run_config import build_parser

CHECKPOINT_HELP = "a run folder, its checkpoints/ folder, or one checkpoints/step-XXXXXXXX folder"


@dataclass
class ExportOptions:
    """The flags of scripts/export.py (jsonargparse; the docstrings are the help)."""

    checkpoint: str
    """A run folder, its checkpoints/ folder, or one checkpoints/step-XXXXXXXX folder."""
    out: str | None = None
    """Output folder (default: <run folder>/hf)."""

    def problems(self) -> list[str]:
        """What is wrong before the checkpoint is read."""
        if self.out is not None and Path(self.out).is_file():
            return [f"--out {self.out}: is a file, not a folder"]
        return []


@dataclass
class EvaluateOptions:
    """The flags of scripts/evaluate.py besides the run config's --config and --SECTION.KEY."""

    checkpoint: str
    """A run folder, its checkpoints/ folder, or one checkpoints/step-XXXXXXXX folder."""
    output_dir: str | None = None
    """Where eval/step-XXXXXXXX/ goes (default: the run folder of the checkpoint)."""


def checkpoint_args(argv: list[str]) -> tuple[EvaluateOptions, list[str]]:
    """(`--checkpoint`, `--output_dir`) as EvaluateOptions, and the rest of argv for the run
    config's parser.

    The run config has a `checkpoint` section (`--checkpoint.every_steps`), so `--checkpoint PATH`
    cannot be one of its arguments: it is taken off first (exact names only, no abbreviations).
    """
    parser = argparse.ArgumentParser(
        prog="evaluate.py",
        usage=EVALUATE_USAGE,
        description=EVALUATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
        allow_abbrev=False,
    )
    group = parser.add_argument_group("the checkpoint")
    group.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    group.add_argument(
        "--output_dir",
        default=None,
        help="where eval/step-XXXXXXXX/ goes (default: the run folder of the checkpoint)",
    )
    if "-h" in argv or "--help" in argv:
        print(parser.format_help())
        build_parser("evaluate.py", RUN_CONFIG_HELP, usage=argparse.SUPPRESS).print_help()
        raise SystemExit(0)
    # A missing --checkpoint: argparse's message, exit 2.
    known, rest = parser.parse_known_args(argv)
    return EvaluateOptions(known.checkpoint, known.output_dir), rest


EVALUATE_USAGE = (
    "%(prog)s [-h] --checkpoint PATH [--output_dir DIR] [--config YAML]...\n"
    "                   [--SECTION.KEY VALUE]..."
)
EVALUATE_HELP = """\
Sample, score and measure a checkpoint as training's evaluation does: held-out
loss, misalignment scores of unconditional and prompted samples, diversity, KL
from a reference model. Prints the metrics; launch with `deepspeed --num_gpus N`
to shard the samples over N ranks.

    deepspeed --num_gpus 2 scripts/evaluate.py --checkpoint runs/pep8_mle \\
        --eval.num_samples 4096 --eval.reference_model models/gpt2

Writes <run folder>/eval/step-XXXXXXXX/samples.jsonl and metrics.json (or the
same under --output_dir). KL from an OpenAI-compatible completions API:
--eval.api_kl_model davinci with OPENAI_API_KEY, and OPENAI_BASE_URL or
--eval.api_kl_base_url for another server."""
EXPORT_HELP = """\
Export a harness checkpoint as a Hugging Face folder (model, tokenizer, model card) that plain
transformers loads with AutoModelForCausalLM.from_pretrained.

    python scripts/export.py --checkpoint runs/pep8_mle/checkpoints/step-00005000 --out exports/x

Prints the folder written."""
RUN_CONFIG_HELP = """\
The run config is the one saved with the checkpoint unless --config is given; --SECTION.KEY
changes any key of it, usually --eval.* (the evaluation settings)."""


@entry_point
def evaluate_main(argv: list[str]) -> int:
    """`scripts/evaluate.py`: sample, score and measure a checkpoint; prints the metrics (rank 0)."""
    args, rest = checkpoint_args(argv)
    from harness import distributed as dist
    from harness.evaluation.evaluate import evaluate_checkpoint

    dist.init_distributed()
    dist.configure_logging()
    metrics = evaluate_checkpoint(args.checkpoint, rest, args.output_dir)
    if dist.is_main():
        print(json.dumps(metrics, indent=2))
    dist.shutdown_distributed()
    return 0


@entry_point
def export_main(argv: list[str]) -> int:
    """`scripts/export.py`: write a Hugging Face folder for a checkpoint."""
    parser = cli_parser("export.py", EXPORT_HELP)
    parser.add_class_arguments(ExportOptions, as_group=False)
    _, args = parse_options(parser, argv, ExportOptions)
    from harness.checkpoints.export import export_checkpoint

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(f"exported to {export_checkpoint(args.checkpoint, args.out)}")
    return 0

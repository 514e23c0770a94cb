"""Command-line entry points: parse the run config (errors before any work), then call the library."""

from __future__ import annotations

import os
import sys

from harness.compat import is_original_cli, translate_original_cli
from harness.config import ConfigError, config_to_yaml, parse_config


def offline_defaults() -> None:
    """Never reach for the Hub implicitly; real Hub paths fail with a clear message instead."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def report_input_error(err: Exception) -> int:
    """Bad input: one line naming the culprit and exit code 2 (PHF_TRACEBACK=1 re-raises)."""
    if os.environ.get("PHF_TRACEBACK"):
        raise err
    print(f"error: {err}", file=sys.stderr)
    return 2


def train_main(argv: list[str] | None = None) -> int:
    """`scripts/train.py`: train (or resume) a run."""
    offline_defaults()
    from harness.distributed import env_world_size

    argv = list(sys.argv[1:] if argv is None else argv)
    show = "--print_config" in argv
    argv = [a for a in argv if a != "--print_config"]
    try:
        if is_original_cli(argv):  # the original PHF code's --task/--method/--override interface
            argv = translate_original_cli(argv)
        cfg = parse_config(argv, prog="train.py", world_size=env_world_size())
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if show:
        print(config_to_yaml(cfg), end="")
        return 0
    from harness.distributed import shutdown_distributed
    from harness.engine import train

    try:
        train(cfg)
    except (ValueError, FileNotFoundError) as err:
        return report_input_error(err)
    shutdown_distributed()
    return 0


def score_main(argv: list[str] | None = None) -> int:
    """`scripts/score.py`: score the corpus into Parquet shards (all ranks share the work)."""
    offline_defaults()
    from harness.distributed import env_world_size

    try:
        cfg = parse_config(argv, prog="score.py", world_size=env_world_size())
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from harness import distributed as dist
    from harness.data.pipeline import plan_corpus, run_scoring
    from harness.engine import configure_logging

    configure_logging()
    try:
        plan, _ = plan_corpus(cfg)  # metadata only: bad input fails before any process group
        dist.init_distributed()
        folder, manifest, _ = run_scoring(cfg, plan)
    except (ValueError, FileNotFoundError) as err:
        return report_input_error(err)
    if dist.is_main():
        print(
            f"scored {manifest['rows']} documents into {manifest['num_shards']} shards under {folder}"
        )
    dist.shutdown_distributed()
    return 0


def prepare_main(argv: list[str] | None = None) -> int:
    """`scripts/prepare.py`: score and pack a corpus on a local pool, SLURM or Ray."""
    import argparse

    offline_defaults()
    from harness.data.prepare import ClusterOptions

    parser = argparse.ArgumentParser(prog="prepare.py", add_help=False)
    parser.add_argument("--executor", choices=["local", "slurm", "ray"], default="local")
    parser.add_argument(
        "--workers", type=int, default=1, help="local: processes; slurm/ray: tasks at once"
    )
    parser.add_argument("--partition", default=None, help="slurm: partition")
    parser.add_argument("--time", default="04:00:00", help="slurm: time limit of one task")
    parser.add_argument("--cpus_per_task", type=int, default=1)
    parser.add_argument("--mem_per_cpu_gb", type=float, default=4.0)
    parser.add_argument("--env_command", default=None, help="slurm: run before each task")
    opts, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = parse_config(rest, prog="prepare.py")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from harness.data.prepare import prepare
    from harness.engine import configure_logging

    configure_logging()
    try:
        print(prepare(cfg, ClusterOptions(**vars(opts))))
    except (ValueError, FileNotFoundError) as err:
        return report_input_error(err)
    return 0

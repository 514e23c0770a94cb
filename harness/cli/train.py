"""`scripts/train.py`, `scripts/score.py`, `scripts/prepare.py`: the run config (errors before any
work), then the library."""

from __future__ import annotations

import sys

from harness import distributed as dist
from harness.cli.common import entry_point
from harness.compat import is_original_cli, translate_original_cli
from harness.config import config_to_yaml
from harness.config.parse import build_parser, config_of, parse_config, parse_namespace
from harness.hub_refs import resolve_run_refs


@entry_point
def train_main(argv: list[str]) -> int:
    """`scripts/train.py`: train (or resume) a run."""
    show = "--print_config" in argv
    argv = [a for a in argv if a != "--print_config"]
    if is_original_cli(argv):  # the original PHF code's --task/--method/--override interface
        argv = translate_original_cli(argv)
    cfg = parse_config(argv, prog="train.py", world_size=dist.env_world_size())
    if show:
        print(config_to_yaml(cfg), end="")
        return 0
    from harness.engine import train  # torch, DeepSpeed and transformers: after the config checks

    train(cfg)
    dist.shutdown_distributed()
    return 0


@entry_point
def score_main(argv: list[str]) -> int:
    """`scripts/score.py`: score the corpus into Parquet shards (all ranks share the work)."""
    cfg = parse_config(argv, prog="score.py", world_size=dist.env_world_size())
    from harness.data.pipeline import plan_corpus, run_scoring

    dist.configure_logging()
    resolve_run_refs(cfg)
    plan, _ = plan_corpus(cfg)  # metadata only: bad input fails before any process group
    dist.init_distributed()
    folder, manifest, _ = run_scoring(cfg, plan)
    if dist.is_main():
        print(
            f"scored {manifest['rows']} documents into {manifest['num_shards']} shards under {folder}"
        )
    dist.shutdown_distributed()
    return 0


@entry_point
def prepare_main(argv: list[str]) -> int:
    """`scripts/prepare.py`: score and pack a corpus on a local pool, SLURM or Ray."""
    from harness.data.prepare import ClusterOptions, prepare

    parser = build_parser("prepare.py", "Score and pack a corpus on a local pool, SLURM or Ray.")
    parser.add_argument("--executor", choices=["local", "slurm", "ray"], default="local")
    parser.add_argument(
        "--workers", type=int, default=1, help="local: processes; slurm/ray: tasks at once"
    )
    parser.add_argument(
        "--partition", default=None, help="slurm: partition (default: the cluster's default one)"
    )
    parser.add_argument("--time", default="04:00:00", help="slurm: time limit of one task")
    parser.add_argument("--cpus_per_task", type=int, default=1)
    parser.add_argument("--mem_per_cpu_gb", type=float, default=4.0)
    parser.add_argument("--env_command", default=None, help="slurm: run before each task")
    parser.add_argument(
        "--ray_address",
        default=None,
        help="ray: HOST:PORT, ray://HOST:PORT, auto or local (default: RAY_ADDRESS, the cluster "
        "`ray start` last started here, else a local Ray for this run)",
    )
    parser.add_argument(
        "--wait", action="store_true", help="slurm: wait for the jobs; exit 1 naming a failed task"
    )
    ns = parse_namespace(parser, argv)
    cfg = config_of(ns)
    flags = ("executor", "workers", "partition", "time", "cpus_per_task", "mem_per_cpu_gb")
    cluster = ClusterOptions(
        **{name: ns[name] for name in (*flags, "env_command", "wait", "ray_address")}
    )
    dist.configure_logging()
    resolve_run_refs(cfg)
    from harness.data.ray_stages import TaskFailed
    from harness.data.worker_watch import WorkerDied

    try:
        print(prepare(cfg, cluster))
    except (WorkerDied, TaskFailed) as err:  # one line, not a traceback through datatrove's pool
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0

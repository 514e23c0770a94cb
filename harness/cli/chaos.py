"""`scripts/chaos.py`: kill training and data preparation at random moments; compare with clean runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from harness.cli.common import cli_parser, entry_point
from harness.run_config import parse_config

ROOT = Path(__file__).resolve().parents[2]
CHAOS_HELP = """\
Kill a run anywhere, many times, and check that it ends where an uninterrupted run does: run
the config once uninterrupted, then again while SIGKILLing it (the process group, one rank,
wandb's service) at seeded random moments, rerunning after every kill until it completes, and
compare the two (every logged loss, the final weights, metrics.jsonl, eval/, hf/, the data
cache, no stray temporary files).

    python scripts/chaos.py --config configs/chaos.yaml --out runs/chaos --kills 20 --seed 0

Writes <out>/chaos_report.json and prints a table; exit code 0 when nothing differs."""


def _parser():
    parser = cli_parser("chaos.py", CHAOS_HELP)
    parser.add_argument(
        "--config", action="append", required=True, help="the run config (YAML); repeat to overlay"
    )
    parser.add_argument(
        "--out", required=True, help="folder for both runs, their logs and the report"
    )
    parser.add_argument(
        "--stage",
        choices=["train", "data", "both"],
        default="both",
        help="soak training (2 ranks), the data stage (local workers) or both",
    )
    parser.add_argument("--kills", type=int, default=20, help="process kills per stage")
    parser.add_argument(
        "--side_kills",
        type=int,
        default=None,
        help="kills of wandb-core in training (default: 2 when the config logs to wandb, else 0)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments and modes")
    parser.add_argument("--num_gpus", type=int, default=2, help="ranks of the training run")
    parser.add_argument("--workers", type=int, default=2, help="local workers of the data stage")
    return parser


def _check(args, cfg) -> None:
    if args.kills < 1:
        raise ValueError(f"--kills must be at least 1, got {args.kills}")
    if args.stage != "train" and cfg.data.scored_dir:
        raise ValueError(
            f"--stage {args.stage} needs the whole data cache under data.cache_dir, but the config "
            f"sets data.scored_dir={cfg.data.scored_dir} (use --stage train, or drop it)"
        )
    if args.stage != "data" and shutil.which("deepspeed") is None:
        raise FileNotFoundError("the deepspeed launcher is not on PATH (pip install deepspeed)")
    if args.side_kills and _wandb_mode(cfg) == "disabled":
        raise ValueError(
            f"--side_kills {args.side_kills} kills wandb's service, but wandb is disabled "
            "(logging.wandb or WANDB_MODE): set logging.wandb: offline"
        )
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(
            f"--out {out} is not empty: choose a new folder (both runs start from nothing)"
        )


def _config_args(args) -> list[str]:
    return [a for path in args.config for a in ("--config", path)]


def _train_command(args, folder: Path) -> list[str]:
    from harness.distributed import free_port

    return [
        "deepspeed", "--num_gpus", str(args.num_gpus), "--master_port", str(free_port()),
        str(ROOT / "scripts" / "train.py"), *_config_args(args),
        "--run.output_dir", str(folder), "--logging.progress_bar", "false",
    ]  # fmt: skip


def _data_command(args, folder: Path) -> list[str]:
    return [
        sys.executable, str(ROOT / "scripts" / "prepare.py"), *_config_args(args),
        "--data.cache_dir", str(folder), "--workers", str(args.workers),
    ]  # fmt: skip


def _wandb_mode(cfg) -> str:
    """The wandb mode the runs will use: WANDB_MODE wins over logging.wandb, as in MetricsLogger."""
    return os.environ.get("WANDB_MODE", cfg.logging.wandb)


def _side_kills(args, cfg) -> int:
    if args.side_kills is None:
        return 2 if _wandb_mode(cfg) != "disabled" else 0
    return args.side_kills


def _soak_stage(args, cfg, stage: str, env: dict[str, str]) -> dict[str, Any]:
    from harness.chaos.compare import compare_caches, compare_runs
    from harness.chaos.markers import DATA_PHASES, TRAIN_PHASES
    from harness.chaos.plan import DATA_KILLS, TRAIN_KILLS, plan_kills, segments
    from harness.chaos.runner import Soak

    out = Path(args.out)
    train = stage == "train"
    soak = Soak(
        stage=stage,
        command=(lambda f: _train_command(args, f))
        if train
        else (lambda f: _data_command(args, f)),
        result_of=lambda f: f,
        compare=compare_runs if train else compare_caches,
        out=out,
        env=env,
        cwd=Path.cwd(),  # the config's relative paths mean what they mean to the user
    )
    if train:  # the data stage is soaked on its own: training starts from a prepared cache
        prep = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "prepare.py"), *_config_args(args)],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        if prep.returncode != 0:
            raise RuntimeError(
                f"preparing the data failed:\n{prep.stdout[-2000:]}{prep.stderr[-3000:]}"
            )
    markers, wall = soak.reference(warm_up=train)
    side = _side_kills(args, cfg) if train else 0
    events = plan_kills(
        segments(markers, wall),
        args.kills,
        args.seed,
        TRAIN_PHASES if train else DATA_PHASES,
        TRAIN_KILLS if train else DATA_KILLS,
        num_ranks=args.num_gpus if train else args.workers,
        side_kills=side,
    )
    result = soak.run(events)
    result["plan"] = [e.to_dict() for e in events]
    result["reference_s"] = round(wall, 2)
    return result


def verdict(result: dict[str, Any]) -> list[str]:
    """Why a stage's soak failed (empty: it passed)."""
    problems = list(result["failures"])
    for mode in ("process", "side"):
        planned = [e for e in result["plan"] if (e["mode"] == "side") == (mode == "side")]
        fired = [k for k in result["kills"] if (k["event"]["mode"] == "side") == (mode == "side")]
        hit = [k for k in fired if k["killed"]]
        if len(hit) != len(planned):
            problems.append(
                f"{len(hit)} of {len(planned)} planned {mode} kills hit a process "
                f"({len(fired) - len(hit)} found nothing to kill)"
            )
    dead = [k for k in result["kills"] if k["event"]["mode"] == "side" and k["killed"]]
    dead = [k for k in dead if not k.get("survived")]
    if dead:
        problems.append(
            f"{len(dead)} run(s) logged nothing more after their side process was killed "
            f"(attempts {sorted({k['attempt'] for k in dead})})"
        )
    if not result["trials"]:
        problems.append("the run never completed")
    for trial in result["trials"]:
        problems += [f"{trial['folder']}: {m}" for m in trial["mismatches"]]
    return problems


def _table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| stage | kills | side kills | landed in | attempts | uninterrupted run | mismatches |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        process = [k for k in r["kills"] if k["event"]["mode"] != "side" and k["killed"]]
        side = [k for k in r["kills"] if k["event"]["mode"] == "side" and k["killed"]]
        modes = Counter(k["event"]["mode"] for k in process)
        landed = Counter(k["landed"] for k in process)
        mismatches = sum(len(t["mismatches"]) for t in r["trials"])
        lines.append(
            f"| {r['stage']} | {len(process)} ({', '.join(f'{n} {m}' for m, n in sorted(modes.items()))}) "
            f"| {len(side)} | {', '.join(f'{p} {n}' for p, n in sorted(landed.items()))} "
            f"| {r['attempts']} | {r['reference_s']} s | {mismatches} |"
        )
    return "\n".join(lines)


@entry_point
def chaos_main(argv: list[str]) -> int:
    """`scripts/chaos.py`: 0 when every stage ends as its uninterrupted run did."""
    args = _parser().parse_args(argv)
    args.config = [str(Path(c).resolve()) for c in args.config]
    cfg = parse_config(_config_args(args), prog="chaos.py")
    _check(args, cfg)
    from harness.atomic import atomic_write_text

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stages = ["data", "train"] if args.stage == "both" else [args.stage]
    results = [_soak_stage(args, cfg, stage, env) for stage in stages]
    problems = {r["stage"]: verdict(r) for r in results}
    report = {"config": args.config, "seed": args.seed, "stages": results, "problems": problems}
    atomic_write_text(out / "chaos_report.json", json.dumps(report, indent=2) + "\n")
    print(_table(results))
    for stage, found in problems.items():
        for line in found:
            print(f"{stage}: {line}")
    print(f"report: {out / 'chaos_report.json'}")
    return 1 if any(problems.values()) else 0

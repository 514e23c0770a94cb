"""`scripts/prepare.py`: the data stages outside a training launch, on datatrove's executors.

    python scripts/prepare.py --config configs/pep8_awr.yaml --executor local --workers 16
    python scripts/prepare.py --config configs/pep8_awr.yaml --executor slurm \
        --partition cpu --time 04:00:00 --env_command "source .venv/bin/activate" [--wait]
    python scripts/prepare.py --config configs/pep8_awr.yaml --executor ray --workers 64 \
        [--ray_address HEAD:6379]

The stages and their files are those a training launch makes itself (`harness.data.pipeline`):
scoring (one task per corpus unit), a one-task step that publishes the manifest, the dedup mask
and the BPE tokenizer, packing (one task per shard) and a one-task step that publishes the
packed `meta.json`. `local` runs them now with a pool of workers; `ray` runs them on a Ray
cluster one after another, a failed task ending the run (`harness.data.ray_stages`); `slurm`
submits them as dependent job arrays and returns, or with `--wait` waits and names a failed task
(`harness.data.slurm`; datatrove requeues preempted tasks; rerun the same command to resubmit
what is left). Afterwards `deepspeed scripts/train.py --config ...` with the same config finds
everything prepared and starts training in seconds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from datatrove.pipeline.base import PipelineStep

from harness.config import Config
from harness.data.executor import local_executor
from harness.data.pack_stage import (
    CountShard,
    PackSpec,
    pack_pipeline,
    pack_spec,
    publish_pack_meta,
)
from harness.data.pipeline import (
    bpe_file,
    counts_dir_for,
    ensure_tokenizer,
    packed_dir_for,
    plan_corpus,
    prepare_data,
)
from harness.data.score_stage import (
    ScoringJob,
    ScoringManifest,
    pin_job,
    publish_manifest,
    scoring_pipeline,
)
from harness.data.worker_watch import fail_on_dead_worker
from harness.tasks import scorer_options_for

log = logging.getLogger(__name__)


@dataclass
class ClusterOptions:
    """How `scripts/prepare.py` runs the stages: each field is its flag of the same name."""

    executor: Literal["local", "slurm", "ray"] = "local"
    """Where the stages run: a pool of --workers processes here, SLURM or a Ray cluster."""
    workers: int = 1
    """local: processes; slurm/ray: tasks at once (-1: no limit)."""
    partition: str | None = None
    """slurm: partition (default: the cluster's default one)."""
    time: str = "04:00:00"
    """slurm: time limit of one task."""
    cpus_per_task: int = 1
    """slurm/ray: CPUs per task."""
    mem_per_cpu_gb: float = 4.0
    """slurm/ray: memory per CPU of a task (GB)."""
    env_command: str | None = None
    """slurm: run before each task, e.g. activating a venv."""
    ray_address: str | None = None
    """ray: HOST:PORT, ray://HOST:PORT, auto or local (default: RAY_ADDRESS, the cluster `ray start` last started here, else a local Ray for this run)."""
    wait: bool = False
    """slurm: wait for the jobs; exit 1 naming a failed task."""
    sbatch_args: dict[str, Any] = field(default_factory=dict)
    """Further sbatch options, e.g. {"account": "lab"} (library use; the memory one is set from mem_per_cpu_gb)."""

    def problems(self) -> list[str]:
        """What is wrong before any executor is asked. The resources of a task are checked
        against the cluster itself, before any work: `slurm.check_slurm_options` (partition,
        memory) and `ray_stages.check_resources` (CPUs and memory against the nodes)."""
        if self.workers < 1 and self.workers != -1:
            return [f"--workers must be >= 1 (or -1: no limit), got {self.workers}"]
        return []


class FinishScoring(PipelineStep):
    """One task after scoring: the manifest, the dedup mask (if asked) and the BPE tokenizer."""

    name = "manifest, dedup mask, tokenizer"
    type = "🏁 - FINISH"

    def __init__(self, cfg_dict: dict[str, Any], folder: str, job: ScoringJob):
        super().__init__()
        self.cfg_dict, self.folder, self.job = cfg_dict, folder, job

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        """Publish what the pack stage needs."""
        from harness.config import config_from_dict
        from harness.data.pack_stage import ensure_dedup_mask

        cfg = config_from_dict(self.cfg_dict)
        folder = Path(self.folder)
        publish_manifest(folder, self.job)
        manifest = ScoringManifest.read(folder)
        if cfg.data.dedup:
            ensure_dedup_mask(folder, manifest)
        ensure_tokenizer(cfg, folder, manifest)
        return
        yield


class FinishPacking(PipelineStep):
    """One task after packing: the packed folder's meta.json."""

    name = "packed meta.json"
    type = "🏁 - FINISH"

    def __init__(self, spec: PackSpec):
        super().__init__()
        self.spec = spec

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        """Publish meta.json with the tokenizer's real fingerprint."""
        from harness.tokenizer import load_tokenizer, tokenizer_fingerprint

        s = self.spec
        publish_pack_meta(s, tokenizer_fingerprint(load_tokenizer(s.tokenizer, s.control_tokens)))
        return
        yield


def _stages(cfg: Config, objective: Any) -> list[tuple[str, list, int, Path]]:
    """(name, pipeline, tasks, logging dir) of the four stages, in order."""
    from harness.config import config_to_dict

    plan, folder = plan_corpus(cfg)
    options = scorer_options_for(cfg.data)
    job = ScoringJob(cfg.data.scorer, dict(options), plan.fingerprint, len(plan.units))
    pin_job(folder, job, plan)
    tokenizer = cfg.data.tokenizer or str(bpe_file(cfg, plan.fingerprint))
    out = packed_dir_for(cfg, job, objective)
    counts = counts_dir_for(cfg, job)
    spec = pack_spec(cfg, folder, job.num_shards, out, tokenizer, objective, counts)
    finish = FinishScoring(config_to_dict(cfg), str(folder), job)
    n = job.num_shards
    return [
        (
            "score",
            scoring_pipeline(folder, cfg.data, cfg.data.scorer, options),
            n,
            folder / "datatrove",
        ),
        ("finish_scoring", [finish], 1, folder / "datatrove-finish"),
        *([("count", [CountShard(spec)], n, counts / "datatrove")] if spec.counts_dir else []),
        ("pack", pack_pipeline(spec), n, out / "datatrove"),
        ("finish_packing", [FinishPacking(spec)], 1, out / "datatrove-finish"),
    ]


def _chain(stages, make_executor):
    """One executor per stage, each depending on the one before; returns the last."""
    executor = None
    for name, pipeline, tasks, logs in stages:
        executor = make_executor(name, pipeline, tasks, str(logs), executor)
    return executor


def _slurm(stages, opts: ClusterOptions, run_name: str):
    from datatrove.executor import SlurmPipelineExecutor

    from harness.data.slurm import SlurmSubmission

    last = _chain(
        stages,
        lambda name, pipeline, tasks, logs, depends: SlurmPipelineExecutor(
            pipeline=pipeline,
            tasks=tasks,
            workers=opts.workers,
            time=opts.time,
            partition=opts.partition,
            cpus_per_task=opts.cpus_per_task,
            mem_per_cpu_gb=opts.mem_per_cpu_gb,
            job_name=f"{run_name}-{name}",
            env_command=opts.env_command,
            sbatch_args=opts.sbatch_args or None,
            logging_dir=logs,
            depends=depends,
        ),
    )
    return SlurmSubmission([stage[0] for stage in stages], last, wait=opts.wait)


def _ray(make_stages, opts: ClusterOptions) -> str:
    from harness.data.ray_stages import connected, run_stages

    # The cluster is reached and the request checked before any work (`_stages` pins the job).
    with connected(opts.ray_address, opts.cpus_per_task, opts.mem_per_cpu_gb):
        stages = make_stages()
        run_stages(stages, opts.workers, opts.cpus_per_task, opts.mem_per_cpu_gb)
    return f"prepared with Ray: packed blocks in {stages[-2][3].parent}"


def prepare(cfg: Config, opts: ClusterOptions) -> str:
    """Run (local, ray) or submit (slurm) every data stage of `cfg`; returns a summary line."""
    from harness.objectives import build_objective

    objective = build_objective(cfg.objective, cfg.run.seed)
    if opts.executor == "local":

        def run_stage(pipeline, n_tasks, logging_dir, what):
            with fail_on_dead_worker(what, opts.workers):
                local_executor(
                    pipeline, n_tasks, logging_dir, 0, n_tasks, workers=opts.workers
                ).run()

        data = prepare_data(cfg, objective, run_stage=run_stage)
        return (
            f"prepared {len(data.train)} train and {len(data.heldout)} held-out blocks in "
            f"{data.packed_dir} (scored shards: {data.scored_dir})"
        )
    if opts.executor == "ray":
        return _ray(lambda: _stages(cfg, objective), opts)
    if opts.executor == "slurm":  # partition, memory, SLURM on PATH: before any work
        from harness.data.slurm import check_slurm_options

        check_slurm_options(opts)
    stages = _stages(cfg, objective)
    if opts.executor == "slurm":
        _slurm(stages, opts, cfg.run.name).run()
        return f"submitted {len(stages)} dependent SLURM job arrays; logs under {stages[0][3]}"
    raise ValueError(f"--executor: unknown {opts.executor!r}; choose local, slurm or ray")

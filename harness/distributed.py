"""Process-group set-up that works under `deepspeed`, `torchrun`, SLURM `srun` and plain `python`."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import torch
import torch.distributed as dist

from harness.console import OncePerLaunch


def free_port() -> int:
    """An unused TCP port on localhost (the launcher's default 29500 collides between runs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_single_process_defaults() -> None:
    """Fill rank/world/master env vars when no launcher did.

    Without them `deepspeed.init_distributed` falls back to MPI discovery, which needs mpi4py.
    SLURM's `srun` sets SLURM_PROCID/SLURM_NTASKS instead: translate those first.
    """
    if "RANK" not in os.environ and "SLURM_PROCID" in os.environ and "SLURM_NTASKS" in os.environ:
        os.environ["RANK"] = os.environ["SLURM_PROCID"]
        os.environ["WORLD_SIZE"] = os.environ["SLURM_NTASKS"]
        os.environ.setdefault("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0"))
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")


def env_world_size() -> int:
    """World size announced by the launcher (1 without one), known before init."""
    return int(os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", "1")))


def init_distributed() -> None:
    """Initialise torch.distributed through DeepSpeed (gloo on CPU, nccl on GPU)."""
    set_single_process_defaults()
    if dist.is_initialized():
        return
    import deepspeed

    # Imported after the group exists, torch.distributed.fsdp (transformers imports it with its
    # models) keeps the backend alive past destroy_process_group: Gloo's threads then run into
    # interpreter finalisation, where a rank can abort with "terminate called without an active
    # exception" after its work is done (seen in scripts/humaneval.py, which builds its model
    # after init). Imported first, it leaves the group alone.
    import torch.distributed.fsdp  # noqa: F401

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    deepspeed.init_distributed(dist_init_required=True)
    _release_cpu_shm_buffer()


def shutdown_distributed() -> None:
    """End a successful run cleanly: wait for every rank, then destroy the process group.

    Exiting with the group still alive lets Gloo's C++ worker threads be torn down during
    interpreter finalisation, which aborts a rank with "terminate called without an active
    exception" (SIGABRT) even though its work finished. Call only on success: after an error on
    one rank the barrier would wait for peers that never come.
    """
    if not dist.is_initialized():
        return
    dist.barrier()
    dist.destroy_process_group()


def _release_cpu_shm_buffer() -> None:
    """Unlink this rank's DeepSpeed CPU all-reduce segment in /dev/shm once every rank has mapped it.

    DeepSpeed's CPU shm comm op (ops/csrc/cpu/comm/shm.cpp) creates one segment per rank, named
    after MASTER_ADDR/MASTER_PORT, and never unlinks it: each run on a new port leaks about 64 MiB
    per rank of RAM-backed /dev/shm until the machine runs out of memory. Every rank maps all
    peers' segments during init, so after a barrier the names can go; the mappings stay valid
    until the processes exit, and then the kernel frees the memory.
    """
    name = (
        f"/dev/shm/deepspeed_allreduce_buffer_{os.getuid()}_"
        f"{os.environ.get('MASTER_ADDR', '')}_{os.environ.get('MASTER_PORT', '')}_{dist.get_rank()}"
    )
    if not os.path.exists(name):
        return
    dist.barrier()
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass


def is_initialized() -> bool:
    """True once the process group exists."""
    return dist.is_initialized()


def rank() -> int:
    """Global rank (0 when not initialised)."""
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    """World size (1 when not initialised)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """True on global rank 0."""
    return rank() == 0


def barrier() -> None:
    """Barrier when distributed, no-op otherwise."""
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: list[float], device: torch.device | str = "cpu") -> list[float]:
    """Sum a list of floats over ranks (one collective)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_true(flag: bool, device: torch.device | str = "cpu") -> bool:
    """True only if `flag` is true on every rank."""
    return all_reduce_sum([0.0 if flag else 1.0], device)[0] == 0.0


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Send a picklable object from `src` to all ranks."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's picklable `obj`, in rank order, on every rank."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_gather_list(items: list[Any]) -> list[Any]:
    """Every rank's list, concatenated in rank order, on every rank."""
    return [item for part in all_gather_object(items) for item in part]


def filter_console() -> None:
    """Warnings and errors once per launch on every handler of the root logger."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, OncePerLaunch) for f in handler.filters):
            handler.addFilter(OncePerLaunch())


def configure_logging() -> None:
    """INFO on rank 0, WARNING elsewhere, one format."""
    # The launcher's RANK is known before the process group exists (the data plan logs first).
    rank_ = (
        rank()
        if is_initialized()
        else int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))
    )
    level = logging.INFO if rank_ == 0 else logging.WARNING
    logging.basicConfig(
        level=level,
        format=f"[%(asctime)s rank{rank_}] %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    logging.getLogger("harness").setLevel(level)
    filter_console()
    # One line per request at INFO from the HTTP client would drown the log; warnings stay.
    for name in ("httpx", "httpx2", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # These libraries print through a handler of their own (installed at their import):
    # propagating to ours too printed every message twice.
    for name in ("huggingface_hub", "datasets"):
        logging.getLogger(name).propagate = False

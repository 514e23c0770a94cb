"""`scripts/prepare.py --executor ray`: the data stages on a Ray cluster, one after another.

Each stage runs on its own datatrove `RayPipelineExecutor` (one Ray actor per task), and the next
starts only once every task of this one has its completion marker. datatrove's executor alone
cannot be chained safely: a task that raises (a corrupt corpus line) is logged at debug level, the
other tasks finish, `run()` logs "Only 3/4 tasks completed" and returns normally, and a stage
built with `depends=` on it then polls for the missing marker every two minutes, forever. Here a
missing marker raises `TaskFailed` naming the stage, the task and the task's own error (read from
the log datatrove copies to `<logging_dir>/logs/task_00003.log`); no later stage starts, and the
finished tasks keep their markers, so rerunning the command redoes only what failed.

Before anything is submitted the cluster is reached and the request checked: a concrete address
that accepts no TCP connection within `CONNECT_TIMEOUT_S` (where `ray.init` would retry for
minutes), and `--cpus_per_task` or `--mem_per_cpu_gb` beyond what any node offers (where a task
would wait forever for a placement group), are bad input (`ValueError`, exit code 2).

The address follows `ray.init`'s rules: `--ray_address HOST:PORT` (or `ray://HOST:PORT`, `auto`,
`local`); unset, `RAY_ADDRESS`, then the cluster `ray start` last started on this machine, then a
local Ray started for this run and stopped after it. Tasks run in the driver's working directory
(relative paths in the config mean the same files) and with the driver's Hub settings; the
stages' folders must be on a file system every node shares.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from datatrove.executor import RayPipelineExecutor

from harness.data.executor import incomplete_tasks

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
GIB = 1024**3
# The driver's Hub settings (scoring tasks stream hf: corpora): tasks see them as local ones would.
FORWARDED_ENV = (
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "HF_HOME",
    "HF_ENDPOINT",
    "HF_TOKEN",
    "PHF_HUB_RETRY_SECONDS",
    "TOKENIZERS_PARALLELISM",
)
_ERROR_LINE = re.compile(r"\| ERROR\s*\| \S+ - (.*)$")
# An HTTP/2 client preface and an empty SETTINGS frame: a gRPC server answers with SETTINGS.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Died|Failed|Interrupt)\b.*$")


class TaskFailed(RuntimeError):
    """A task of a stage ended without its completion marker; later stages were not started."""


def _enter_dir(path: str) -> None:
    if os.path.isdir(path):  # a node without it: the stages' paths had better be absolute
        os.chdir(path)


class _InDir:
    """Unpickled as `os.chdir(path)`: what is unpickled after it resolves relative paths there."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (_enter_dir, (self.path,))


def _rebuild(entered: None, cls: type, state: dict) -> RayPipelineExecutor:
    executor = cls.__new__(cls)
    executor.__dict__.update(state)
    return executor


class _DriverCwdExecutor(RayPipelineExecutor):
    """datatrove's Ray executor, unpickled by each task in the driver's working directory (Ray
    starts workers in the raylet's), so relative paths such as the default `.cache/phf` name the
    same files. The directory is entered before the pipeline and `logging_dir` are unpickled:
    their fsspec folders fix an absolute path then."""

    def __reduce__(self):
        return (_rebuild, (_InDir(os.getcwd()), type(self), self.__dict__))


def _address_source(address: str | None) -> tuple[str | None, str]:
    """(address, how it was given) for error messages."""
    if address:
        return address, f"--ray_address={address}"
    env = os.environ.get("RAY_ADDRESS")
    return (env, f"RAY_ADDRESS={env}") if env else (None, "--ray_address (unset)")


def _host_port(address: str) -> tuple[str, int] | None:
    """HOST and PORT of a concrete address (`HOST:PORT`, `ray://HOST:PORT`); None otherwise."""
    bare = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = bare.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _check_reachable(address: str, named: str) -> None:
    """Fail in seconds where `ray.init` would retry for minutes: nothing listens at the address
    (connection refused, timed out), or something that is no gRPC server (Ray's GCS and client
    server answer the HTTP/2 preface with a SETTINGS frame; an HTTP/1 server does not)."""
    if address in ("auto", "local"):
        return
    target = _host_port(address)
    if target is None:
        raise ValueError(f"{named}: expected HOST:PORT, ray://HOST:PORT, auto or local")
    try:
        with socket.create_connection(target, timeout=CONNECT_TIMEOUT_S) as sock:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return
            sock.sendall(_H2_PREFACE)
            head = b""
            while len(head) < 9 and (chunk := sock.recv(9 - len(head))):
                head += chunk
    except OSError as err:
        raise ValueError(f"{named}: cannot reach a Ray cluster ({err})") from None
    if len(head) < 9 or head[3] != 0x04:
        raise ValueError(
            f"{named}: cannot reach a Ray cluster (something listens there, but no Ray GCS: it "
            f"answered {head[:16]!r} to an HTTP/2 handshake)"
        )


def check_resources(nodes: list[dict], cpus_per_task: int, mem_per_cpu_gb: float) -> None:
    """Refuse a task no alive node of `ray.nodes()` can hold (it would wait forever)."""
    if cpus_per_task < 1:
        raise ValueError(f"--cpus_per_task={cpus_per_task}: must be at least 1")
    if mem_per_cpu_gb < 0:
        raise ValueError(f"--mem_per_cpu_gb={mem_per_cpu_gb}: must not be negative")
    offers = [n.get("Resources", {}) for n in nodes if n.get("Alive", True)]
    cpus = max((r.get("CPU", 0.0) for r in offers), default=0.0)
    if cpus_per_task > cpus:
        raise ValueError(
            f"--cpus_per_task={cpus_per_task}: no node of the Ray cluster has that many CPUs "
            f"(the largest has {cpus:g}, {len(offers)} node(s))"
        )
    need = int(mem_per_cpu_gb * cpus_per_task * GIB)  # what datatrove reserves per task
    fits = [r.get("memory", 0.0) for r in offers if r.get("CPU", 0.0) >= cpus_per_task]
    memory = max(fits, default=0.0)
    if need > memory:
        raise ValueError(
            f"--mem_per_cpu_gb={mem_per_cpu_gb:g}: a task of {cpus_per_task} CPU(s) asks for "
            f"{need / GIB:.1f} GiB of Ray memory; no node with {cpus_per_task} CPU(s) offers more "
            f"than {memory / GIB:.1f} GiB"
        )


@contextmanager
def connected(address: str | None, cpus_per_task: int, mem_per_cpu_gb: float) -> Iterator[None]:
    """Connect to the cluster (see the module's doc) and check the request; disconnect after."""
    try:
        import ray
    except ImportError:
        raise ValueError('--executor ray needs Ray: pip install -e ".[ray]"') from None
    address, named = _address_source(address)
    if address:
        _check_reachable(address, named)
    env_vars = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    try:
        ray.init(
            address=address,
            logging_level=logging.WARNING,
            log_to_driver=False,  # each task's log is in <logging_dir>/logs/task_NNNNN.log
            runtime_env={"env_vars": env_vars} if env_vars else None,
        )
    except (ConnectionError, RuntimeError, TimeoutError) as err:
        # ray.init sends the token of ~/.ray/auth_token to an explicit address only when asked.
        explicit = address not in (None, "auto") and not os.environ.get("RAY_AUTH_MODE")
        hint = "; a cluster with token authentication needs RAY_AUTH_MODE=token" if explicit else ""
        raise ValueError(f"{named}: cannot reach a Ray cluster ({err}{hint})") from None
    try:
        check_resources(ray.nodes(), cpus_per_task, mem_per_cpu_gb)
        yield
    finally:
        ray.shutdown()


def task_error(logging_dir: Path, task: int, since: float = 0.0) -> str:
    """The error a failed task logged (the message of datatrove's ERROR line, or the last
    exception line of its traceback); where to look when there is none. A log older than
    `since` (a time.time()) is from an earlier run."""
    path = Path(logging_dir) / "logs" / f"task_{task:05d}.log"
    if not path.is_file() or path.stat().st_mtime < since:
        return f"no log at {path} (its worker died before writing one: killed, out of memory?)"
    lines = path.read_text(errors="replace").splitlines()
    for i in range(len(lines) - 1, -1, -1):
        found = _ERROR_LINE.search(lines[i])
        if found and found.group(1).strip():
            return found.group(1).strip()
        if found:  # an exception without a message: its type, from the traceback below
            after = [x for x in lines[i + 1 :] if _EXCEPTION_LINE.match(x)]
            return after[-1] if after else f"see {path}"
    return f"no error in {path}"


def run_stages(stages: list, workers: int, cpus_per_task: int, mem_per_cpu_gb: float) -> None:
    """Run `(name, pipeline, tasks, logging dir)` stages in order on the connected cluster; the
    first stage with a task left incomplete raises `TaskFailed` and no later stage starts."""
    for name, pipeline, tasks, logs in stages:
        started = time.time() - 1.0  # file systems keep mtimes to the second, or coarser
        log.info("ray: stage %s: %d task(s), logs under %s", name, tasks, logs)
        _DriverCwdExecutor(
            pipeline=pipeline,
            tasks=tasks,
            workers=workers,
            cpus_per_task=cpus_per_task,
            mem_per_cpu_gb=mem_per_cpu_gb,
            logging_dir=str(logs),
        ).run()
        failed = incomplete_tasks(Path(logs), tasks)
        if failed:
            error = task_error(Path(logs), failed[0], started)
            more = f" (tasks {', '.join(map(str, failed[1:]))} failed too)" if failed[1:] else ""
            raise TaskFailed(
                f"ray: stage {name}: task {failed[0]} failed: {error}{more}; later stages not "
                "started, rerun the same command to redo what failed"
            )

"""The Hugging Face Hub: `hf:<name>[@revision]` references resolved once to a commit, errors as
one line, bounded retries.

Network use follows the user's environment (`HF_HUB_OFFLINE`, `HF_ENDPOINT`, `HF_HOME`, read by
`huggingface_hub` at import): the harness never forces a mode. What it does on top:

- a reference names a repo and a revision (branch, tag or commit); it is resolved to a commit
  once, and the run records the commit in `<run.output_dir>/hub.json`, so a relaunch reads
  the same bytes and contacts no Hub (`harness.hub_refs`);
- a missing repo, revision or file, an offline machine without the files cached, and a Hub that
  keeps failing are each one `ValueError` line naming the config key and the value;
- server errors (5xx, 408, 429) and dropped connections are retried with backoff for at most
  `PHF_HUB_RETRY_SECONDS` (default 300) in all; a refused connection or unknown host is not
  retried (the machine is offline: say so at once).

Only `huggingface_hub` talks to the network here; it sends every request to `HF_ENDPOINT`.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_ENV = "PHF_HUB_RETRY_SECONDS"
RETRY_STATUS = (408, 429, 500, 502, 503, 504)


def split_ref(spec: str) -> tuple[str, str | None]:
    """`[hf:]name@revision` -> (name, revision); a bare name has no revision (the default branch)."""
    spec = spec[3:] if spec.startswith("hf:") else spec
    name, sep, revision = spec.partition("@")
    return name, (revision or None) if sep else None


def endpoint() -> str:
    """The Hub the clients talk to (`HF_ENDPOINT`)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def offline() -> bool:
    """Whether the user's environment turned the Hub off (`HF_HUB_OFFLINE=1`)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def retry_seconds() -> float:
    """How long a failing Hub is retried in all (`PHF_HUB_RETRY_SECONDS`, default 300)."""
    raw = os.environ.get(RETRY_ENV, "300")
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise ValueError(f"{RETRY_ENV}={raw!r}: a number of seconds expected") from None


def _status(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def _chain(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def retryable(err: BaseException) -> bool:
    """A server error or a connection dropped mid-transfer: worth another try. Offline mode, a
    missing repo/revision/file and a host that cannot be reached at all are not."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    final = (OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError)
    for e in _chain(err):
        if isinstance(e, (*final, EntryNotFoundError)):
            return False
        status = _status(e)
        if status is not None:
            return status in RETRY_STATUS
        name = type(e).__name__
        if name in ("ConnectError", "ConnectTimeout") or isinstance(e, ConnectionRefusedError):
            return False  # nothing listens there: offline or a wrong HF_ENDPOINT
        if any(k in name for k in ("Timeout", "RemoteProtocol", "ReadError", "Network")):
            return True
        if isinstance(e, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
            return True
        if "IncompleteRead" in name or "ChunkedEncoding" in name or "ClientPayload" in name:
            return True
    return False


class RetryBudget:
    """Backoff between tries of one piece of work (exponential with jitter, 1 s to 30 s), for at
    most `PHF_HUB_RETRY_SECONDS` counted from its first failure."""

    def __init__(self, what: str):
        self.what, self.budget = what, retry_seconds()
        self.first_failure: float | None = None
        self.wait, self.tries = 1.0, 0

    def absorb(self, err: Exception) -> None:
        """Sleep before the next try; re-raise `err` when it is final or the time is spent."""
        now = time.monotonic()
        self.first_failure = now if self.first_failure is None else self.first_failure
        self.tries += 1
        spent = now - self.first_failure
        if not retryable(err) or spent + self.wait > self.budget:
            if self.tries > 1:
                err.add_note(f"{self.what}: gave up after {self.tries} tries in {spent:.0f} s")
            raise err
        first = str(err).splitlines()[0][:200] if str(err) else ""
        log.warning(
            "%s: %s (%s); retrying in %.0f s (%.0f of %.0f s used)",
            self.what,
            type(err).__name__,
            first,
            self.wait,
            spent,
            self.budget,
        )
        time.sleep(self.wait * (0.5 + random.random() / 2))
        self.wait = min(self.wait * 2, 30.0)


def with_retries(what: str, attempt: Callable[[], T]) -> T:
    """`attempt()`, tried again after a retryable error within one `RetryBudget`."""
    budget = RetryBudget(what)
    while True:
        try:
            return attempt()
        except Exception as err:
            budget.absorb(err)


def hub_error(key: str, spec: str, err: BaseException, local_hint: str) -> ValueError:
    """One line naming `key=spec` and what went wrong: a missing repo, revision or file, offline
    without the files cached, an unreachable endpoint, or a Hub that kept failing."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    name, revision = split_ref(spec)
    where = endpoint()
    notes = " ".join(getattr(err, "__notes__", []))
    if isinstance(err, (OfflineModeIsEnabled, LocalEntryNotFoundError)) or (
        offline() and not isinstance(err, ValueError)
    ):
        why = (
            "HF_HUB_OFFLINE=1 and it is not in the local Hugging Face cache "
            f"({_cache_dir()}): download it once on a networked machine, or {local_hint}"
        )
    elif isinstance(err, GatedRepoError):
        why = f"the repository is gated on {where}: accept its terms and log in (hf auth login)"
    elif isinstance(err, RevisionNotFoundError):
        why = f"no revision {revision!r} in {name} on {where}"
    elif isinstance(err, RepositoryNotFoundError):
        why = f"no repository {name} on {where} (or it is private: log in with hf auth login)"
    elif isinstance(err, EntryNotFoundError):
        why = f"a file is missing in {name}: {str(err).splitlines()[0][:200]}"
    elif not retryable(err) and _status(err) is None:
        why = (
            f"cannot reach {where} ({type(err).__name__}: {str(err)[:160]}). Offline? Set "
            f"HF_HUB_OFFLINE=1 to use the local cache, or {local_hint}"
        )
    else:
        first = str(err).splitlines()[0][:200] if str(err) else ""
        why = f"the Hub at {where} kept failing ({type(err).__name__}: {first}) {notes}".rstrip()
    return ValueError(f"{key}={spec}: {why}")


def _cache_dir() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def repo_info(key: str, spec: str, repo_type: str, local_hint: str, files_metadata: bool = False):
    """The repo at `hf:name[@revision]` now: its commit (`.sha`) and files (`.siblings`, with
    sizes when `files_metadata`); one request, retried while the Hub fails."""
    from huggingface_hub import HfApi

    name, revision = split_ref(spec)
    if offline():
        raise hub_error(key, spec, RuntimeError("offline"), local_hint)
    try:
        return with_retries(
            f"{key}={spec}",
            lambda: HfApi().repo_info(
                name, revision=revision, repo_type=repo_type, files_metadata=files_metadata
            ),
        )
    except Exception as err:
        raise hub_error(key, spec, err, local_hint) from None


def resolve_commit(key: str, spec: str, repo_type: str, local_hint: str) -> str:
    """The commit `hf:name[@revision]` names now."""
    return repo_info(key, spec, repo_type, local_hint).sha

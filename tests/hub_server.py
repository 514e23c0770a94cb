"""A local Hugging Face Hub for tests: the real clients (huggingface_hub, datasets, transformers)
talk to it over HTTP on 127.0.0.1, with HF_ENDPOINT pointing at it (see `hub_environment`).

It speaks the parts of the Hub's protocol those clients use: repo info, tree listing (paginated
with `Link` headers), paths-info, refs, commits, and `resolve` (HEAD/GET, single byte ranges),
with the Hub's headers (`X-Repo-Commit`, `ETag`, `X-Linked-Etag`/`X-Linked-Size` for LFS files)
and error codes (`X-Error-Code: RepoNotFound | RevisionNotFound | EntryNotFound`). Faults can be
injected on file downloads (`HubServer.fail`). `RecordingProxy` catches anything else.
"""

from __future__ import annotations

import json
import mimetypes
import os
import re
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qs, quote, unquote, urlsplit

try:  # imported as tests.hub_server, or as hub_server with tests/ on sys.path
    from .hub_protocol import REPO_TYPES, Commit, Repo, split_revision
except ImportError:
    from hub_protocol import REPO_TYPES, Commit, Repo, split_revision

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_ERROR_MESSAGES = {
    "RepoNotFound": "Repository not found",
    "RevisionNotFound": "Invalid rev id: {}",
    "EntryNotFound": "Entry not found",
}


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that can close the connections it has open."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, handler: type, owner: object):
        super().__init__(("127.0.0.1", 0), handler)
        self.owner = owner
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()

    def serve_in_thread(self) -> None:
        """Serve from a daemon thread (a short poll interval makes `shutdown()` quick)."""
        threading.Thread(target=self.serve_forever, args=(0.02,), daemon=True).start()

    def close_all(self) -> None:
        """Stop serving, close the listening socket and every open connection."""
        self.shutdown()
        self.server_close()
        with self.sockets_lock:
            for sock in list(self.open_sockets):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _Handler(BaseHTTPRequestHandler):
    """Shared plumbing: HTTP/1.1 keep-alive, request recording, quiet logs."""

    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections end after this

    def setup(self) -> None:
        """Track the connection so that `stop()` can close it."""
        super().setup()
        with self.server.sockets_lock:
            self.server.open_sockets.add(self.connection)

    def finish(self) -> None:
        """Forget the connection."""
        with self.server.sockets_lock:
            self.server.open_sockets.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        """Silence the per-request log lines on stderr."""

    def _record(self) -> None:
        """Append (method, path, headers) to the owner's `requests`."""
        owner = self.server.owner
        headers = {k.lower(): v for k, v in self.headers.items()}
        with owner._lock:
            owner.requests.append((self.command, self.path, headers))

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self, status: int, body: bytes = b"", headers: dict | None = None, drop: int | None = None
    ) -> None:
        """Answer; with `drop=N`, send only N body bytes and close the connection (FIN)."""
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body if drop is None else body[:drop])
        if drop is not None:
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)


class _HubHandler(_Handler):
    """Routes Hub requests to `HubServer`'s repos."""

    def do_GET(self) -> None:
        """GET: repo info, tree, refs, commits, resolve."""
        self._handle()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _handle(self) -> None:
        self._record()
        body = self._body()
        split = urlsplit(self.path)
        self.query = parse_qs(split.query)
        segments = [unquote(s) for s in split.path.split("/")[1:]]
        self.request_id = uuid.uuid4().hex
        try:
            if segments[:1] == ["api"] and len(segments) > 2 and segments[1] in REPO_TYPES:
                self._api(REPO_TYPES[segments[1]], segments[2:], body)
            elif "resolve" in segments[1:4]:
                self._resolve(split.path, segments)
            else:
                self._json(404, {"error": "Not Found"})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # -- responses ---------------------------------------------------------------------------
    def _json(self, status: int, obj: object, headers: dict | None = None) -> None:
        body = json.dumps(obj).encode()
        base = {"Content-Type": "application/json; charset=utf-8", "X-Request-Id": self.request_id}
        self._send(status, body, {**base, **(headers or {})})

    def _error(self, code: str, detail: str = "", headers: dict | None = None) -> None:
        message = _ERROR_MESSAGES[code].format(detail)
        extra = {"X-Error-Code": code, "X-Error-Message": message, **(headers or {})}
        self._json(404, {"error": message}, extra)

    def _find(self, repo_type: str, segments: list[str]) -> tuple[Repo | None, list[str]]:
        """The repo named by the first one or two segments, and the segments after its name."""
        repos = self.server.owner._repos
        for n in (2, 1):
            repo = repos.get((repo_type, "/".join(segments[:n])))
            if repo is not None and len(segments) >= n:
                return repo, segments[n:]
        return None, []

    # -- /api/{type}s/{name}/... ---------------------------------------------------------------
    def _api(self, repo_type: str, segments: list[str], body: bytes) -> None:
        repo, rest = self._find(repo_type, segments)
        if repo is None:
            return self._error("RepoNotFound")
        action = rest[0] if rest else "revision"
        if action == "refs" and len(rest) == 1:
            return self._json(200, repo.refs())
        revision, tail = split_revision(rest[1:]) if len(rest) > 1 else ("main", [])
        commit = repo.resolve(revision)
        if commit is None:
            return self._error("RevisionNotFound", revision)
        if action == "revision" and not tail:
            expand = self.query.get("expand", []) + self.query.get("expand[]", [])
            blobs = self.query.get("blobs", ["false"])[0].lower() == "true"
            return self._json(200, repo.info(commit, blobs, expand))
        if action == "tree":
            return self._tree(repo, commit, "/".join(tail).strip("/"))
        if action == "paths-info" and not tail and self.command == "POST":
            return self._paths_info(repo, commit, body)
        if action == "commits" and not tail:
            return self._json(200, repo.commits_json(commit))
        self._json(404, {"error": "Not Found"})

    def _flag(self, name: str, values: dict | None = None) -> bool:
        value = (values if values is not None else self.query).get(name, ["false"])[0]
        return str(value).lower() in ("1", "true")

    def _tree(self, repo: Repo, commit: Commit, path: str) -> None:
        expand = self._flag("expand")
        entries = repo.tree(commit, path, self._flag("recursive"), expand)
        if entries is None:
            return self._error("EntryNotFound", headers={"X-Repo-Commit": commit.sha})
        owner = self.server.owner
        size = owner.tree_page_size or (50 if expand else 1000)
        start = int(self.query.get("cursor", ["0"])[0])
        headers = {}
        if start + size < len(entries):
            query = {k: v[0] for k, v in self.query.items()}
            query["cursor"] = str(start + size)
            next_url = owner.url + urlsplit(self.path).path + "?"
            next_url += "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
            headers["Link"] = f'<{next_url}>; rel="next"'
        self._json(200, entries[start : start + size], headers)

    def _paths_info(self, repo: Repo, commit: Commit, body: bytes) -> None:
        if "json" in (self.headers.get("Content-Type") or ""):
            form = json.loads(body or b"{}")
            paths, expand = form.get("paths", []), bool(form.get("expand", False))
            paths = [paths] if isinstance(paths, str) else paths
        else:
            form = parse_qs(body.decode())
            paths, expand = form.get("paths", []), self._flag("expand", form)
        entries = [repo.entry(commit, p.strip("/"), expand) for p in paths]
        self._json(200, [e for e in entries if e is not None])

    # -- /[datasets/]{name}/resolve/{rev}/{path} -----------------------------------------------
    def _resolve(self, raw_path: str, segments: list[str]) -> None:
        repo_type = REPO_TYPES.get(segments[0]) if segments[0] != "models" else None
        at = segments.index("resolve", 1)
        start = 1 if repo_type else 0
        repo = self.server.owner._repos.get((repo_type or "model", "/".join(segments[start:at])))
        if repo is None or len(segments) <= at + 1:
            return self._error("RepoNotFound")
        revision, rest = split_revision(segments[at + 1 :])
        commit = repo.resolve(revision)
        if commit is None:
            return self._error("RevisionNotFound", revision)
        blob = commit.files.get("/".join(rest))
        if blob is None:
            return self._error("EntryNotFound", headers={"X-Repo-Commit": commit.sha})
        fault = self.server.owner._take_fault(raw_path) if self.command == "GET" else None
        if fault is not None and fault["drop"] and fault["after_bytes"] is None:
            self.close_connection = True
            return self.connection.shutdown(socket.SHUT_RDWR)
        if fault is not None and not fault["drop"]:
            return self._json(fault["status"], {"error": f"injected HTTP {fault['status']}"})
        name = rest[-1]
        headers = {
            "Content-Type": mimetypes.guess_type(name)[0] or "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": f'"{blob.etag}"',
            "X-Repo-Commit": commit.sha,
            "X-Request-Id": self.request_id,
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}",
        }
        if blob.sha256:
            headers.update({"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": len(blob.data)})
        status, data = self._range(blob.data, headers)
        self._send(status, data, headers, fault and fault["after_bytes"])

    def _range(self, data: bytes, headers: dict) -> tuple[int, bytes]:
        """Apply a single `Range: bytes=a-b` (also `a-` and `-n`); others are ignored (200)."""
        match = _RANGE.match(self.headers.get("Range") or "")
        if match is None or match.groups() == ("", ""):
            return 200, data
        size = len(data)
        first, last = match.groups()
        if first:
            start, end = int(first), min(int(last) if last else size - 1, size - 1)
        else:
            start, end = max(size - int(last), 0), size - 1
        if start >= size or start > end or (not first and int(last) == 0):
            headers["Content-Range"] = f"bytes */{size}"
            return 416, b""
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return 206, data[start : end + 1]


_R = TypeVar("_R", bound="_Running")


class _Running:
    """start/stop/context manager of a `_Server` on 127.0.0.1 serving `_handler`."""

    _handler: type

    def __init__(self):
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self.requests: list[tuple[str, str, dict]] = []
        self.url = ""

    def start(self: _R) -> _R:
        """Bind 127.0.0.1 on a free port and serve from a daemon thread; returns self."""
        self._server = _Server(self._handler, self)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._server.serve_in_thread()
        return self

    def stop(self) -> None:
        """Close the listening socket and open connections: later connections are refused."""
        if self._server is not None:
            self._server.close_all()
            self._server = None

    def __enter__(self: _R) -> _R:
        """Start."""
        return self.start()

    def __exit__(self, *exc) -> None:
        """Stop."""
        self.stop()


class HubServer(_Running):
    """A local Hub on 127.0.0.1: add repos with `add_repo`, point clients at `url`.

    `requests` lists `(method, path with query, headers with lower-case names)` of every request.
    """

    _handler = _HubHandler

    def __init__(self):
        """A stopped server with no repos."""
        super().__init__()
        self._repos: dict[tuple[str, str], Repo] = {}
        self._faults: list[dict] = []
        self.tree_page_size: int | None = None  # None: the Hub's (1000, 50 with expand=true)

    def add_repo(
        self,
        name: str,
        files: dict[str, bytes],
        repo_type: str = "dataset",
        branch: str = "main",
        tag: str | None = None,
    ) -> str:
        """Commit `files` on `branch` of repo `name` (created if new); returns the commit sha.

        Files of the branch's previous commit are kept unless replaced; older commits stay
        readable by sha. A new branch starts from main's head.
        """
        if repo_type not in REPO_TYPES.values():
            raise ValueError(f"unknown repo type {repo_type!r}")
        with self._lock:
            repo = self._repos.setdefault((repo_type, name), Repo(repo_type, name))
        return repo.commit(files, branch, tag)

    def fail(
        self,
        path_contains: str,
        status: int = 500,
        times: int = 1,
        after_bytes: int | None = None,
        drop: bool = False,
    ) -> None:
        """Inject a fault on GET resolve requests whose URL path contains `path_contains`.

        `status`: answer that status (JSON body, no X-Error-Code) `times` times (-1: forever).
        `drop=True`: send the headers and the first `after_bytes` body bytes then close the
        connection (FIN; with `after_bytes=None`, close before any response).
        """
        if after_bytes is not None and not drop:
            raise ValueError("after_bytes needs drop=True")
        fault = {"needle": path_contains, "status": status, "times": times}
        with self._lock:
            self._faults.append({**fault, "after_bytes": after_bytes, "drop": drop})

    def faults_left(self) -> int:
        """How many injected faults have not fired yet (forever-faults count as one)."""
        with self._lock:
            return sum(1 for fault in self._faults if fault["times"] != 0)

    def clear_faults(self) -> None:
        """Forget every fault not yet used up (e.g. one injected with times=-1)."""
        with self._lock:
            self._faults.clear()

    def _take_fault(self, raw_path: str) -> dict | None:
        with self._lock:
            for fault in self._faults:
                needle = fault["needle"]
                if fault["times"] != 0 and (needle in raw_path or needle in unquote(raw_path)):
                    fault["times"] -= fault["times"] > 0
                    return dict(fault)
        return None


class _ProxyHandler(_Handler):
    """Records the request (CONNECT host:port or an absolute URL) and refuses it."""

    def do_GET(self) -> None:
        """Any method: record, answer 403, close."""
        self._record()
        if self.command != "CONNECT":
            self._body()
        self.close_connection = True
        self._send(403, b"blocked by RecordingProxy", {"Connection": "close"})

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_CONNECT = do_GET


class RecordingProxy(_Running):
    """An HTTP(S) proxy on 127.0.0.1 that records every request (`requests`: method, target -
    `host:port` for CONNECT, the absolute URL otherwise - and headers) and forwards none (403).
    """

    _handler = _ProxyHandler


_CLEARED = (
    "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_DATASETS_CACHE", "HF_XET_CACHE", "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "TRANSFORMERS_CACHE", "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE", "HF_HUB_ENABLE_HF_TRANSFER", "HUGGINGFACE_CO_STAGING",
    "HF_HUB_DISABLE_XET",
)  # fmt: skip


_REFUSED = "http://127.0.0.1:9"  # the discard port: nothing listens there


def hub_environment(
    server: HubServer, hf_home: Path, proxy: RecordingProxy | None = None
) -> dict[str, str]:
    """A copy of os.environ for a client process of `server` (clients read these at import).

    Every request to a host other than 127.0.0.1/localhost goes through a proxy (HTTP(S)_PROXY,
    NO_PROXY): `proxy` if given (it records them), else a closed port on 127.0.0.1 (refused), so
    nothing leaves the machine (e.g. `datasets` asks http://datasets-server.127.0.0.1:PORT).
    """
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update(
        HF_ENDPOINT=server.url,
        HF_HUB_OFFLINE="0",
        HF_HOME=str(hf_home),
        HF_UPDATE_DOWNLOAD_COUNTS="0",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_DISABLE_UPDATE_CHECK="1",
    )
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        env[name] = env[name.upper()] = proxy.url if proxy is not None else _REFUSED
    env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost"
    return env

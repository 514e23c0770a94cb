"""The Hugging Face Hub's data model and JSON shapes, for the local test server (tests/hub_server.py).

Repos hold immutable commits; branches and tags point at them. The JSON produced here follows what
`huggingface_hub` (HfApi.repo_info / list_repo_tree / get_paths_info / list_repo_refs /
list_repo_commits) parses: file entries are `{type, oid, size, path, lfs?}`, with `lastCommit` and
`securityFileStatus` only when `expand=true`, like the Hub.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

# The patterns of the Hub's default .gitattributes: these files are stored with Git LFS.
LFS_SUFFIXES = (
    ".7z", ".arrow", ".bin", ".bz2", ".ckpt", ".ftz", ".gz", ".h5", ".joblib", ".lz4", ".mlmodel",
    ".model", ".msgpack", ".npy", ".npz", ".onnx", ".ot", ".parquet", ".pb", ".pickle", ".pkl",
    ".pt", ".pth", ".rar", ".safetensors", ".tar", ".tflite", ".tgz", ".wasm", ".xz", ".zip",
    ".zst",
)  # fmt: skip
LFS_MIN_SIZE = 10 * 1024 * 1024  # the Hub refuses non-LFS files above 10 MB
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_SPECIAL_REF = re.compile(r"^refs/(convert/\w+|pr/\d+)$")
_SHORT_SHA = re.compile(r"^[0-9a-f]{7,40}$")
_counter = itertools.count()


def now_iso() -> str:
    """The current UTC time in the Hub's date format ('2024-01-31T12:00:00.000Z')."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def git_blob_oid(data: bytes) -> str:
    """The git object id of a blob with these bytes (what `git hash-object` prints)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(path: str, data: bytes) -> bool:
    """Whether the Hub would store this file with Git LFS."""
    return path.lower().endswith(LFS_SUFFIXES) or len(data) >= LFS_MIN_SIZE


@dataclass(frozen=True)
class Blob:
    """One file's bytes and the ids the Hub derives from them."""

    data: bytes
    oid: str  # git oid of the blob in the tree (of the LFS pointer for LFS files)
    sha256: str | None  # LFS files only
    pointer_size: int | None

    @classmethod
    def of(cls, path: str, data: bytes) -> Blob:
        """Build the blob of `path`, as an LFS pointer where the Hub would use one."""
        if not is_lfs(path, data):
            return cls(data, git_blob_oid(data), None, None)
        sha = hashlib.sha256(data).hexdigest()
        pointer = (
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n"
        )
        return cls(data, git_blob_oid(pointer.encode()), sha, len(pointer))

    @property
    def etag(self) -> str:
        """The ETag of a resolve response: the LFS sha256, else the git blob oid."""
        return self.sha256 or self.oid


@dataclass
class Commit:
    """An immutable snapshot of a repo's files."""

    sha: str
    parent: str | None
    files: dict[str, Blob]
    title: str
    date: str = field(default_factory=now_iso)


class Repo:
    """A Hub repo: commits, branches and tags."""

    def __init__(self, repo_type: str, name: str):
        self.repo_type = repo_type
        self.name = name
        self.created = now_iso()
        self.object_id = hashlib.md5(f"{repo_type}/{name}".encode()).hexdigest()[:24]
        self.commits: dict[str, Commit] = {}
        self.branches: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self._lock = threading.Lock()

    def commit(self, files: dict[str, bytes], branch: str, tag: str | None) -> str:
        """Add a commit on `branch` (from main's head for a new branch) adding/replacing `files`."""
        with self._lock:
            parent = self.branches.get(branch) or self.branches.get("main")
            snapshot = dict(self.commits[parent].files) if parent else {}
            for path, data in files.items():
                path = path.strip("/")
                snapshot[path] = Blob.of(path, bytes(data))
            digest = hashlib.sha1(
                f"{self.repo_type}/{self.name}|{parent}|{next(_counter)}".encode()
            )
            for path in sorted(snapshot):
                digest.update(f"|{path}:{snapshot[path].oid}".encode())
            sha = digest.hexdigest()
            title = f"Upload {len(files)} file(s)" if parent else "initial commit"
            self.commits[sha] = Commit(sha, parent, snapshot, title)
            self.branches[branch] = sha
            if tag is not None:
                self.tags[tag] = sha
            return sha

    def resolve(self, revision: str) -> Commit | None:
        """The commit a branch, tag, full or short (7+ hex) commit sha names; None if none."""
        with self._lock:
            sha = self.branches.get(revision) or self.tags.get(revision)
            if sha is None and _SHORT_SHA.match(revision):
                found = [s for s in self.commits if s.startswith(revision)]
                sha = found[0] if len(found) == 1 else None
            return self.commits.get(sha) if sha else None

    def ancestry(self, commit: Commit) -> list[Commit]:
        """`commit` and its ancestors, newest first."""
        chain = [commit]
        while chain[-1].parent is not None:
            chain.append(self.commits[chain[-1].parent])
        return chain

    def info(self, commit: Commit, blobs: bool, expand: list[str]) -> dict:
        """The JSON of GET /api/{type}s/{name}[/revision/{rev}] (`?blobs=true`, `?expand=...`)."""
        siblings = []
        for path in sorted(commit.files):
            blob = commit.files[path]
            sibling: dict = {"rfilename": path}
            if blobs:
                sibling.update(size=len(blob.data), blobId=blob.oid)
                if blob.sha256:
                    sibling["lfs"] = {
                        "size": len(blob.data),
                        "sha256": blob.sha256,
                        "pointerSize": blob.pointer_size,
                    }
            siblings.append(sibling)
        info = {
            "_id": self.object_id,
            "id": self.name,
            "author": self.name.split("/")[0] if "/" in self.name else None,
            "sha": commit.sha,
            "lastModified": commit.date,
            "createdAt": self.created,
            "private": False,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(len(blob.data) for blob in commit.files.values()),
        }
        if self.repo_type == "model":
            info["modelId"] = self.name
        if expand:
            info = {k: v for k, v in info.items() if k in ("_id", "id") or k in expand}
        return info

    def _last_commit(self, commit: Commit, path: str) -> dict:
        """`lastCommit` of a path: the oldest commit since which its content is what `commit` has."""

        def content(c: Commit) -> list:
            return sorted(
                (p, b.oid) for p, b in c.files.items() if p == path or p.startswith(path + "/")
            )

        owner, wanted = commit, content(commit)
        for older in self.ancestry(commit)[1:]:
            if content(older) != wanted:
                break
            owner = older
        return {"id": owner.sha, "title": owner.title, "date": owner.date}

    def entry(self, commit: Commit, path: str, expand: bool) -> dict | None:
        """The tree / paths-info entry of a file or folder; None if `path` is neither."""
        blob = commit.files.get(path)
        if blob is not None:
            out: dict = {"type": "file", "oid": blob.oid, "size": len(blob.data), "path": path}
            if blob.sha256:
                out["lfs"] = {
                    "oid": blob.sha256,
                    "size": len(blob.data),
                    "pointerSize": blob.pointer_size,
                }
            if expand:
                out["lastCommit"] = self._last_commit(commit, path)
                out["securityFileStatus"] = {
                    "status": "safe",
                    "avScan": {"virusFound": False, "virusNames": None},
                    "pickleImportScan": None,
                }
            return out
        children = sorted((p, b.oid) for p, b in commit.files.items() if p.startswith(path + "/"))
        if not path or not children:
            return None
        tree_oid = hashlib.sha1(repr(children).encode()).hexdigest()
        out = {"type": "directory", "oid": tree_oid, "size": 0, "path": path}
        if expand:
            out["lastCommit"] = self._last_commit(commit, path)
        return out

    def tree(self, commit: Commit, path: str, recursive: bool, expand: bool) -> list[dict] | None:
        """Entries below folder `path` ('' is the root), or None if it is not a folder."""
        prefix = path + "/" if path else ""
        below = [p for p in commit.files if p.startswith(prefix)]
        if path and not below:
            return None
        names: set[str] = set()
        for file_path in below:
            parts = file_path[len(prefix) :].split("/")
            depth = len(parts) if recursive else 1
            for i in range(1, depth + 1):
                names.add(prefix + "/".join(parts[:i]))
        entries = [self.entry(commit, name, expand) for name in names]
        # Folders first, then files, each sorted by path (the Hub lists "tree first").
        return sorted(entries, key=lambda e: (e["type"] != "directory", e["path"]))

    def refs(self) -> dict:
        """The JSON of GET /api/{type}s/{name}/refs."""

        def refs(names: dict[str, str], kind: str) -> list[dict]:
            return [
                {"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": sha}
                for n, sha in sorted(names.items())
            ]

        return {
            "branches": refs(self.branches, "heads"),
            "converts": [],
            "tags": refs(self.tags, "tags"),
            "pullRequests": [],
        }

    def commits_json(self, commit: Commit) -> list[dict]:
        """The JSON of GET /api/{type}s/{name}/commits/{rev}: newest first."""
        return [
            {
                "id": c.sha,
                "title": c.title,
                "message": "",
                "authors": [{"user": "hub-server", "avatar": None}],
                "date": c.date,
            }
            for c in self.ancestry(commit)
        ]


def split_revision(segments: list[str]) -> tuple[str, list[str]]:
    """Split decoded URL segments into (revision, rest): clients send `refs/pr/1` quoted or not."""
    if len(segments) >= 3 and _SPECIAL_REF.match("/".join(segments[:3])):
        return "/".join(segments[:3]), segments[3:]
    return segments[0], segments[1:]

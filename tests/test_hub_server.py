"""The local Hub (tests/hub_server.py) against the real clients: huggingface_hub, datasets and
transformers run in subprocesses (they read HF_ENDPOINT & co at import) with `hub_environment`.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hub_server import HubServer, RecordingProxy, hub_environment

ROWS = [{"text": f"row {i}", "n": i} for i in range(5)]
LINES = [{"text": f"line {i}"} for i in range(4)]
BLOB = bytes(range(256)) * 4  # 1 KiB, LFS-tracked as *.bin

_MODEL_SCRIPT = """
import sys
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
words = ["<unk>", "<eos>", "hello", "world", "the", "a"]
tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>")
fast.save_pretrained(sys.argv[1])
config = GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=len(words), n_positions=32,
                    bos_token_id=1, eos_token_id=1)
GPT2LMHeadModel(config).save_pretrained(sys.argv[1])
"""  # fmt: skip


def _parquet(rows: list[dict]) -> bytes:
    """The bytes of a parquet file of `rows`."""
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


def _jsonl_gz(rows: list[dict]) -> bytes:
    """The bytes of a gzipped JSON-lines file of `rows`."""
    return gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode())


@pytest.fixture(scope="module")
def proxy():
    """The proxy every client request to another host goes to."""
    with RecordingProxy() as running:
        yield running


@pytest.fixture(scope="module")
def model_build(tmp_path_factory):
    """Save the tiny GPT-2 in the background while the other tests run (torch is slow to load)."""
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    command = [sys.executable, "-c", _MODEL_SCRIPT, str(folder)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    yield folder, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def hub(model_build):
    """A module-wide server with a parquet, a jsonl.gz, a bytes and a one-segment-name repo."""
    with HubServer() as server:
        server.shas = {
            "pq": server.add_repo(
                "org/pq",
                {"data/train-00000-of-00001.parquet": _parquet(ROWS), "README.md": b"# pq\n"},
            ),
            "js": server.add_repo("org/js", {"shard_0.jsonl.gz": _jsonl_gz(LINES)}),
            "bytes": server.add_repo("org/bytes", {"blob.bin": BLOB, "notes.txt": b"hello\n"}),
            "plain": server.add_repo("plain", {"config.json": b"{}"}, repo_type="model"),
        }
        yield server


@pytest.fixture
def env(hub, proxy, tmp_path):
    """The client environment: `hub` as HF_ENDPOINT, a fresh HF_HOME, `proxy`."""
    return hub_environment(hub, tmp_path / "hf", proxy)


def run_client(env: dict, code: str, timeout: float = 120) -> object:
    """Run `code` in a fresh interpreter with `env`; it prints one JSON value last."""
    command = [sys.executable, "-c", textwrap.dedent(code)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def raw(hub: HubServer, method: str, path: str, headers: dict | None = None):
    """One plain HTTP request to the server: (status, headers, body)."""
    conn = http.client.HTTPConnection(*hub.url[len("http://") :].split(":"), timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_repo_info_tree_paths_info_refs_commits(hub, env):
    """HfApi's metadata calls parse the server's JSON."""
    out = run_client(
        env,
        """
        import json
        from huggingface_hub import HfApi
        api = HfApi()
        info = api.repo_info("org/bytes", repo_type="dataset", files_metadata=True)
        plain = api.repo_info("plain")
        root = api.list_repo_tree("org/pq", repo_type="dataset")
        infos = api.get_paths_info(
            "org/pq", ["data", "README.md", "missing"], repo_type="dataset", expand=True
        )
        print(json.dumps({
            "sha": info.sha, "private": info.private,
            "siblings": {s.rfilename: [s.size, s.lfs and s.lfs.sha256] for s in info.siblings},
            "plain": [plain.id, plain.sha, [s.rfilename for s in plain.siblings]],
            "root": sorted((type(e).__name__, e.path) for e in root),
            "files": api.list_repo_files("org/pq", repo_type="dataset"),
            "infos": [[type(e).__name__, e.path, e.last_commit.oid] for e in infos],
            "refs": [b.target_commit for b in api.list_repo_refs("plain").branches],
            "commits": [c.commit_id for c in api.list_repo_commits("plain")],
        }))
        """,
    )
    assert out["sha"] == hub.shas["bytes"] and out["private"] is False
    sha256 = hashlib.sha256(BLOB).hexdigest()
    assert out["siblings"] == {"blob.bin": [len(BLOB), sha256], "notes.txt": [6, None]}
    assert out["plain"] == ["plain", hub.shas["plain"], ["config.json"]]
    assert out["root"] == [["RepoFile", "README.md"], ["RepoFolder", "data"]]
    assert out["files"] == ["README.md", "data/train-00000-of-00001.parquet"]
    pq_sha = hub.shas["pq"]
    assert out["infos"] == [["RepoFolder", "data", pq_sha], ["RepoFile", "README.md", pq_sha]]
    assert out["refs"] == out["commits"] == [hub.shas["plain"]]


def test_tree_pagination_follows_link_headers(tmp_path):
    """list_repo_files follows the `Link: <...>; rel="next"` pages."""
    with HubServer() as small:
        small.tree_page_size = 2
        small.add_repo("org/many", {f"d/f{i}.txt": b"x" for i in range(5)})
        files = run_client(
            hub_environment(small, tmp_path / "hf2"),
            """
            import json
            from huggingface_hub import list_repo_files
            print(json.dumps(list_repo_files("org/many", repo_type="dataset")))
            """,
        )
        cursors = [p for m, p, h in small.requests if "cursor=" in p]
    assert files == [f"d/f{i}.txt" for i in range(5)]
    assert len(cursors) == 2  # 6 entries (a folder, 5 files), 2 a page


def test_hf_hub_download_and_snapshot_download(hub, env, tmp_path):
    """Downloads land in the cache under the commit sha."""
    model = hub.add_repo("org/snap", {"a.txt": b"A", "sub/b.safetensors": b"B" * 10}, "model")
    out = run_client(
        env,
        """
        import json
        from pathlib import Path
        from huggingface_hub import hf_hub_download, snapshot_download
        readme = hf_hub_download("org/pq", "README.md", repo_type="dataset")
        snap = Path(snapshot_download("org/snap"))
        print(json.dumps({
            "readme": Path(readme).read_text(), "readme_dir": Path(readme).parent.name,
            "snap": snap.name,
            "files": {str(p.relative_to(snap)): p.read_text() for p in snap.rglob("*") if p.is_file()},
        }))
        """,
    )
    assert out["readme"] == "# pq\n" and out["readme_dir"] == hub.shas["pq"]
    assert out["snap"] == model
    assert out["files"] == {"a.txt": "A", "sub/b.safetensors": "B" * 10}


def test_resolve_headers_ranges_and_errors(hub):
    """The resolve endpoint's headers, byte ranges and 404 kinds, over plain HTTP."""
    sha = hub.shas["bytes"]
    status, headers, body = raw(hub, "HEAD", "/datasets/org/bytes/resolve/main/blob.bin")
    assert (status, body, headers["X-Repo-Commit"]) == (200, b"", sha)
    assert headers["Content-Length"] == headers["X-Linked-Size"] == str(len(BLOB))
    assert headers["ETag"] == headers["X-Linked-Etag"]  # the LFS sha256
    assert headers["Accept-Ranges"] == "bytes"
    status, headers, body = raw(hub, "GET", f"/datasets/org/bytes/resolve/{sha}/notes.txt")
    assert (status, body, headers["Content-Length"]) == (200, b"hello\n", "6")
    assert "X-Linked-Etag" not in headers  # not an LFS file: ETag is the git blob oid
    path = "/datasets/org/bytes/resolve/main/blob.bin"
    status, headers, body = raw(hub, "GET", path, {"Range": "bytes=10-19"})
    assert (status, headers["Content-Range"], body) == (206, "bytes 10-19/1024", BLOB[10:20])
    status, headers, body = raw(hub, "GET", path, {"Range": "bytes=-4"})
    assert (status, body) == (206, BLOB[-4:])
    status, headers, _ = raw(hub, "GET", path, {"Range": "bytes=5000-"})
    assert (status, headers["Content-Range"]) == (416, "bytes */1024")
    status, headers, _ = raw(hub, "GET", "/datasets/org/bytes/resolve/main/nope.txt")
    assert (status, headers["X-Error-Code"]) == (404, "EntryNotFound")
    assert headers["X-Repo-Commit"] == sha  # on a 404 too: huggingface_hub caches the miss
    status, headers, _ = raw(hub, "HEAD", "/datasets/org/bytes/resolve/nobranch/blob.bin")
    assert (status, headers["X-Error-Code"]) == (404, "RevisionNotFound")
    status, headers, _ = raw(hub, "GET", "/datasets/org/none/resolve/main/blob.bin")
    assert (status, headers["X-Error-Code"]) == (404, "RepoNotFound")
    status, _, _ = raw(hub, "GET", "/some/other/path?x=1")
    assert status == 404 and ("GET", "/some/other/path?x=1") in [r[:2] for r in hub.requests]


def test_hf_file_system_seek_and_partial_reads(hub, env):
    """HfFileSystem reads a slice of a file with a Range request."""
    out = run_client(
        env,
        """
        import json
        from huggingface_hub import HfFileSystem
        fs = HfFileSystem()
        with fs.open("datasets/org/bytes/blob.bin", "rb", block_size=64) as f:
            f.seek(300)
            head = f.read(8)
            f.seek(-4, 2)
            tail = f.read()
        print(json.dumps({
            "head": list(head), "tail": list(tail),
            "ls": sorted(fs.ls("datasets/org/bytes", detail=False)),
            "size": fs.info("datasets/org/bytes/blob.bin")["size"],
        }))
        """,
    )
    assert bytes(out["head"]) == BLOB[300:308] and bytes(out["tail"]) == BLOB[-4:]
    assert out["ls"] == ["datasets/org/bytes/blob.bin", "datasets/org/bytes/notes.txt"]
    assert out["size"] == len(BLOB)
    ranges = [h.get("range") for m, p, h in hub.requests if p.endswith("main/blob.bin")]
    assert any(r and r.startswith("bytes=300-") for r in ranges)  # fsspec adds read-ahead


def test_not_found_kinds_map_to_hub_exceptions(hub, env):
    """X-Error-Code maps to huggingface_hub's exceptions."""
    out = run_client(
        env,
        """
        import json
        from huggingface_hub import HfApi, hf_hub_download
        api = HfApi()
        calls = {
            "info_repo": lambda: api.repo_info("org/none", repo_type="dataset"),
            "info_rev": lambda: api.repo_info("org/pq", repo_type="dataset", revision="nope"),
            "tree_entry": lambda: list(api.list_repo_tree("org/pq", "nodir", repo_type="dataset")),
            "dl_repo": lambda: hf_hub_download("org/none", "x.txt"),
            "dl_rev": lambda: hf_hub_download("org/pq", "README.md", repo_type="dataset", revision="v9"),
            "dl_entry": lambda: hf_hub_download("org/pq", "nope.md", repo_type="dataset"),
        }
        out = {}
        for name, call in calls.items():
            try:
                out[name] = call() and None
            except Exception as e:
                out[name] = [c.__name__ for c in type(e).__mro__]
        print(json.dumps(out))
        """,
    )
    for call, error in {
        "info_repo": "RepositoryNotFoundError", "info_rev": "RevisionNotFoundError",
        "tree_entry": "EntryNotFoundError", "dl_repo": "RepositoryNotFoundError",
        "dl_rev": "RevisionNotFoundError", "dl_entry": "EntryNotFoundError",
    }.items():  # fmt: skip
        assert error in out[call], (call, out[call])


def test_pinned_commit_keeps_reading_old_bytes(hub, env):
    """A new commit moves main; the old commit, its tag and short sha keep the old bytes."""
    old = hub.add_repo("org/versions", {"file.txt": b"old"}, tag="v1")
    code = """
        import json
        from huggingface_hub import HfFileSystem, hf_hub_download, list_repo_files
        def read(rev):
            return open(hf_hub_download("org/versions", "file.txt", repo_type="dataset",
                                        revision=rev)).read()
        print(json.dumps({
            "main": read("main"), "old": read("OLD"), "tag": read("v1"), "short": read("OLD"[:8]),
            "fs_old": HfFileSystem().read_text("datasets/org/versions@OLD/file.txt"),
            "files_old": list_repo_files("org/versions", repo_type="dataset", revision="OLD"),
        }))
        """.replace("OLD", old)
    assert run_client(env, code)["main"] == "old"
    new = hub.add_repo("org/versions", {"file.txt": b"new", "added.txt": b"+"})
    out = run_client(env, code)  # same HF_HOME: main must move to the new commit
    old_url = f"/datasets/org/versions/resolve/{old}/file.txt"
    assert new != old and raw(hub, "GET", old_url)[2] == b"old"
    assert out == {
        "main": "new", "old": "old", "tag": "old", "short": "old", "fs_old": "old",
        "files_old": ["file.txt"],
    }  # fmt: skip


def test_injected_500_is_visible_to_the_client(hub, env):
    """`fail(status=500, times=1)`: the first download fails with 500, the next succeeds."""
    hub.add_repo("org/faults", {"flaky.txt": b"ok"})
    hub.fail("flaky.txt", status=500, times=1)
    out = run_client(
        env,
        """
        import json
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError
        try:
            hf_hub_download("org/faults", "flaky.txt", repo_type="dataset")
            first = None
        except HfHubHTTPError as e:
            first = e.response.status_code
        second = open(hf_hub_download("org/faults", "flaky.txt", repo_type="dataset")).read()
        print(json.dumps([first, second]))
        """,
    )
    assert out == [500, "ok"]


def test_drop_closes_the_connection_mid_body(hub, env):
    """`fail(drop=True, after_bytes=N)`: N bytes of the body arrive, then the connection closes."""
    hub.add_repo("org/drops", {"cut.bin": BLOB, "resume.bin": BLOB})
    hub.fail("cut.bin", drop=True, after_bytes=100)
    with pytest.raises(http.client.IncompleteRead) as error:
        raw(hub, "GET", "/datasets/org/drops/resolve/main/cut.bin")
    assert error.value.partial == BLOB[:100] and error.value.expected == len(BLOB) - 100
    hub.fail("cut.bin", drop=True)  # no after_bytes: closed before any response
    with pytest.raises(http.client.RemoteDisconnected):
        raw(hub, "GET", "/datasets/org/drops/resolve/main/cut.bin")
    # huggingface_hub's http_get retries a dropped download (after 1 s). It resumes with a Range
    # request only from what it has written, in 10 MiB chunks: a smaller file starts over.
    hub.fail("resume.bin", drop=True, after_bytes=300)
    out = run_client(
        env,
        """
        import json
        from huggingface_hub import hf_hub_download
        path = hf_hub_download("org/drops", "resume.bin", repo_type="dataset")
        print(json.dumps(list(open(path, "rb").read())))
        """,
    )
    assert bytes(out) == BLOB
    assert len([p for m, p, h in hub.requests if m == "GET" and "resume.bin" in p]) == 2


def test_datasets_builder_data_files_and_streaming(hub, env, proxy):
    """datasets resolves a repo's data files and streams parquet and jsonl.gz rows."""
    before = len(proxy.requests)
    out = run_client(
        env,
        """
        import json
        import datasets
        pq = datasets.load_dataset_builder("org/pq", revision="main")
        js = datasets.load_dataset_builder("org/js", revision="JS_SHA")
        print(json.dumps({
            "pq": [pq.name, {str(k): list(v) for k, v in pq.config.data_files.items()}],
            "js": [js.name, {str(k): list(v) for k, v in js.config.data_files.items()}],
            "pq_rows": list(datasets.load_dataset("org/pq", split="train", streaming=True)),
            "js_rows": list(datasets.load_dataset("org/js", split="train", streaming=True)),
        }))
        """.replace("JS_SHA", hub.shas["js"]),
    )
    pq_sha, js_sha = hub.shas["pq"], hub.shas["js"]
    # Data files are pinned to the commit that the revision resolved to.
    pq_file = f"hf://datasets/org/pq@{pq_sha}/data/train-00000-of-00001.parquet"
    assert out["pq"] == ["parquet", {"train": [pq_file]}]
    assert out["js"] == ["json", {"train": [f"hf://datasets/org/js@{js_sha}/shard_0.jsonl.gz"]}]
    assert out["pq_rows"] == ROWS and out["js_rows"] == LINES
    streamed = [h.get("range") for m, p, h in hub.requests if m == "GET" and p.endswith(".gz")]
    assert streamed and all(streamed)  # read with Range requests through HfFileSystem
    # With revision "main" (or none) datasets also asks the dataset viewer at
    # http://datasets-server.<endpoint host>/info: the proxy refuses it and datasets carries on.
    hosts = {h["host"].split(":")[0] for _, _, h in proxy.requests[before:]}
    assert hosts == {"datasets-server.127.0.0.1"}


@pytest.fixture(scope="module")
def tiny_model(hub, model_build) -> str:
    """The tiny GPT-2 and its tokenizer uploaded as model repo org/tiny-gpt2; its commit sha."""
    folder, proc = model_build
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-4000:]
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    return hub.add_repo("org/tiny-gpt2", files, repo_type="model")


def test_transformers_from_pretrained(hub, env, tiny_model):
    """AutoTokenizer and AutoModelForCausalLM load from the server."""
    out = run_client(
        env,
        """
        import json
        from transformers import AutoModelForCausalLM, AutoTokenizer
        tok = AutoTokenizer.from_pretrained("org/tiny-gpt2", revision="main")
        model = AutoModelForCausalLM.from_pretrained("org/tiny-gpt2", revision="SHA")
        ids = tok("hello world the")["input_ids"]
        print(json.dumps([ids, type(model).__name__, model.config.n_embd]))
        """.replace("SHA", tiny_model),
    )
    assert out == [[2, 3, 4], "GPT2LMHeadModel", 16]


def test_recording_proxy_catches_other_hosts(env, proxy):
    """Requests to other hosts reach the proxy (CONNECT or absolute URL) and are refused."""
    before = len(proxy.requests)
    out = run_client(
        env,
        """
        import json, requests
        try:
            requests.get("https://example.invalid/", timeout=10)
        except requests.exceptions.ProxyError as e:
            https = type(e).__name__
        http = requests.get("http://example.invalid/page?q=1", timeout=10).status_code
        print(json.dumps([https, http]))
        """,
    )
    assert out == ["ProxyError", 403]
    assert [r[:2] for r in proxy.requests[before:]] == [
        ("CONNECT", "example.invalid:443"),
        ("GET", "http://example.invalid/page?q=1"),
    ]


def test_stop_refuses_later_connections():
    """After stop(), connecting fails."""
    server = HubServer().start()
    server.add_repo("org/x", {"a.txt": b"a"})
    assert raw(server, "GET", "/datasets/org/x/resolve/main/a.txt")[2] == b"a"
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        raw(server, "GET", "/datasets/org/x/resolve/main/a.txt")


def test_hub_environment_sets_client_variables(hub, tmp_path):
    """hub_environment sets the variables clients read at import."""
    env = hub_environment(hub, tmp_path)
    assert env["HF_ENDPOINT"] == hub.url and env["HF_HOME"] == str(tmp_path)
    assert env["HF_HUB_OFFLINE"] == "0" and env["HF_UPDATE_DOWNLOAD_COUNTS"] == "0"
    assert env["HF_HUB_DISABLE_TELEMETRY"] == "1"
    assert env["HTTPS_PROXY"].startswith("http://127.0.0.1:")  # nothing leaves the machine

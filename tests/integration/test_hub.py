"""The Hugging Face Hub for real: the harness's entry points against a Hub-protocol server on
127.0.0.1 (`tests.hub_server`), with an environment that is not offline.

The harness runs in a subprocess (the Hub clients read HF_ENDPOINT and HF_HUB_OFFLINE at import).
Every subprocess also gets HTTP(S)_PROXY pointing at a recording proxy on 127.0.0.1 with only
127.0.0.1 exempt: a request to any other host would be caught there (and never leave the machine).
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.hub_server import HubServer, RecordingProxy, hub_environment
from tests.integration.launch import ROOT, read_metrics, tiny_config
from tests.integration.test_scoring_distributed import file_digests

pytestmark = pytest.mark.slow

PARQUET = "phf/code-parquet"
JSONL = "phf/code-jsonl"
TOKENIZER = "phf/tiny-tokenizer"
MODEL = "phf/tiny-gpt2"


def stdlib_texts(n: int) -> list[str]:
    """The first `n` non-empty stdlib modules (sorted), at most 4,000 characters each."""
    out = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")[:4000]
        if text.strip():
            out.append(text)
        if len(out) == n:
            return out
    raise AssertionError("not enough stdlib files")


def parquet_bytes(texts: list[str]) -> bytes:
    """A Parquet file of `{"text": ...}` rows in row groups of 10."""
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": texts}), buf, row_group_size=10)
    return buf.getvalue()


def jsonl_gz_bytes(texts: list[str]) -> bytes:
    """JSONL.gz in the paper's scored schema (`texts`/`scores`, one segment per line)."""
    lines = []
    for text in texts:
        segs = text.splitlines(keepends=True) or [text]
        lines.append(json.dumps({"texts": segs, "scores": [0.0] * len(segs)}))
    return gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)


def folder_files(folder: Path) -> dict[str, bytes]:
    """Every file of a saved folder, for uploading as a repo."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A Hub with two data sets, a tokenizer repo (tag v1) and a tiny GPT-2, plus the proxy."""
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from harness.tokenizer import EOS, train_bpe

    work = tmp_path_factory.mktemp("hub-repos")
    texts = stdlib_texts(120)
    server = HubServer().start()
    commits = {}
    commits[PARQUET] = server.add_repo(
        PARQUET,
        {
            "data/train-00000-of-00002.parquet": parquet_bytes(texts[:40]),
            "data/train-00001-of-00002.parquet": parquet_bytes(texts[40:80]),
        },
    )
    commits[JSONL] = server.add_repo(JSONL, {"data/train.jsonl.gz": jsonl_gz_bytes(texts[80:120])})
    train_bpe(texts, 400, work / "tokenizer.json")
    tok = PreTrainedTokenizerFast(tokenizer_file=str(work / "tokenizer.json"), eos_token=EOS)
    tok.save_pretrained(work / "tok")
    commits["v1"] = server.add_repo(
        TOKENIZER, folder_files(work / "tok"), repo_type="model", tag="v1"
    )
    # A later commit on main changes the tokenizer: a pinned revision must not see it.
    server.add_repo(TOKENIZER, {"README.md": b"moved on\n"}, repo_type="model")
    config = GPT2Config(n_layer=1, n_head=2, n_embd=32, n_positions=64, vocab_size=len(tok))
    GPT2LMHeadModel(config).save_pretrained(work / "model")
    tok.save_pretrained(work / "model")
    commits[MODEL] = server.add_repo(MODEL, folder_files(work / "model"), repo_type="model")
    proxy = RecordingProxy().start()
    server.commits = commits
    yield server, proxy
    proxy.stop()
    server.stop()


def run(script: str, args: list[str], hub, home: Path, timeout: int = 600, **extra):
    """`python scripts/<script> args` with the Hub at the local server, nothing offline."""
    server, proxy = hub
    env = hub_environment(server, home / "hf", proxy)
    env.update(
        WANDB_MODE="disabled",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(ROOT),
        PHF_HUB_RETRY_SECONDS="20",
    )
    env.pop("HF_UPDATE_DOWNLOAD_COUNTS", None)  # the harness must set it itself
    env.update(extra)
    cmd = [sys.executable, str(ROOT / "scripts" / script), *args]
    started = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    proc.seconds = time.time() - started
    return proc


def ok(proc) -> None:
    """Fail with the output's tail when a command failed."""
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )


def error_line(proc) -> str:
    """The one `error: ...` line of a failed command (and nothing like a traceback)."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-4000:]
    return errors[0]


def hub_config(tmp_path: Path, **data) -> Path:
    """A tiny single-process run on a Hub corpus."""
    return tiny_config(
        tmp_path,
        data={"corpus": f"hf:{PARQUET}", "max_documents": None, **data},
        train={"max_steps": 3, "global_batch_size": 4, "micro_batch_size": 2},
        checkpoint={"every_steps": 3, "keep_last": 1},
    )


def test_train_on_a_hub_corpus_with_a_hub_tokenizer_then_relaunch_with_the_hub_down(hub, tmp_path):
    server, proxy = hub
    cfg = hub_config(tmp_path, max_documents=50, tokenizer=f"hf:{TOKENIZER}@v1")
    proc = run("train.py", ["--config", str(cfg)], hub, tmp_path)
    ok(proc)
    run_dir = tmp_path / "run"
    record = json.loads((run_dir / "hub.json").read_text())
    tag_commit = server.commits["v1"]
    assert record["data.tokenizer"]["commit"] == tag_commit
    assert record["data.corpus"] == {f"hf:{PARQUET}": server.commits[PARQUET]}
    assert (run_dir / "tokenizer" / "tokenizer.json").is_file()
    # data.max_documents spans both remote files: 40 + 10 records.
    manifests = list((tmp_path / "cache" / "scored").glob("*/manifest.json"))
    assert [json.loads(m.read_text())["rows"] for m in manifests] == [50]
    # With the server gone, a relaunch for 3 more steps contacts no Hub and trains on.
    server.stop()
    try:
        again = run("train.py", ["--config", str(cfg), "--train.max_steps", "6"], hub, tmp_path)
        ok(again)
    finally:
        server.start()
    steps = [r["step"] for r in read_metrics(run_dir) if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6], steps
    assert "resum" in again.stderr.lower(), again.stderr[-3000:]
    assert not proxy.requests, proxy.requests  # nothing left for another host


def test_a_500_and_a_dropped_connection_mid_file_lose_nothing_and_repeat_nothing(hub, tmp_path):
    server, _ = hub
    # Prepared (scored, tokenizer, packed) and trained on the JSONL.gz data set with a Hub
    # tokenizer; then scored again through a 500 and a dropped connection.
    clean = hub_config(tmp_path / "clean", corpus=f"hf:{JSONL}", tokenizer=f"hf:{TOKENIZER}@v1")
    ok(run("prepare.py", ["--config", str(clean), "--workers", "1"], hub, tmp_path))
    ok(run("train.py", ["--config", str(clean)], hub, tmp_path))
    assert [r["step"] for r in read_metrics(tmp_path / "clean" / "run") if "loss" in r] == [1, 2, 3]
    server.fail("train.jsonl.gz", status=500, times=1)
    server.fail("train.jsonl.gz", drop=True, after_bytes=3000, times=1)
    faulty = hub_config(tmp_path / "faulty", corpus=f"hf:{JSONL}")
    proc = run("score.py", ["--config", str(faulty)], hub, tmp_path)
    ok(proc)
    assert server.faults_left() == 0  # both faults were met on the way
    digests = [file_digests(tmp_path / p / "cache" / "scored") for p in ("clean", "faulty")]
    assert digests[0] == digests[1]


def test_a_hub_that_keeps_failing_ends_in_bounded_time_naming_the_file(hub, tmp_path):
    server, _ = hub
    server.fail("train.jsonl.gz", status=503, times=-1)
    try:
        cfg = hub_config(tmp_path, corpus=f"hf:{JSONL}")
        proc = run("score.py", ["--config", str(cfg)], hub, tmp_path, PHF_HUB_RETRY_SECONDS="1")
    finally:
        server.clear_faults()
    line = error_line(proc)
    assert "train.jsonl.gz" in line and "kept failing" in line, line
    assert proc.seconds < 90


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("data.corpus", "hf:phf/no-such-data", "no repository phf/no-such-data"),
        ("data.corpus", f"hf:{PARQUET}@no-such-branch", "no revision 'no-such-branch'"),
        ("data.tokenizer", "hf:phf/no-such-tokenizer", "no repository phf/no-such-tokenizer"),
        ("data.tokenizer", f"hf:{TOKENIZER}@v9", "no revision 'v9'"),
        ("model.path", f"hf:{TOKENIZER}", "no config.json"),
    ],
)
def test_a_missing_repo_revision_or_file_is_one_line_naming_it(hub, tmp_path, key, value, expected):
    section, name = key.split(".")
    cfg = hub_config(tmp_path)
    args = ["--config", str(cfg), f"--{key}", value]
    if section == "model":
        args += ["--model.from_scratch", "false"]
    proc = run("score.py", args, hub, tmp_path)
    line = error_line(proc)
    assert f"{key}={value}" in line and expected in line, line
    assert proc.returncode == 2 and proc.seconds < 60


def test_offline_without_the_files_cached_fails_in_seconds_saying_what_to_provide(hub, tmp_path):
    cfg = hub_config(tmp_path)
    proc = run("score.py", ["--config", str(cfg)], hub, tmp_path, HF_HUB_OFFLINE="1")
    line = error_line(proc)
    assert "HF_HUB_OFFLINE=1" in line and "local JSONL/Parquet files" in line, line
    assert proc.returncode == 2 and proc.seconds < 30


def test_finetune_from_a_hub_model_uses_its_tokenizer(hub, tmp_path):
    server, _ = hub
    cfg = tiny_config(
        tmp_path,
        data={"max_documents": 30},
        model={"path": f"hf:{MODEL}", "from_scratch": False},
        train={"max_steps": 2, "global_batch_size": 4, "micro_batch_size": 2},
        checkpoint={"every_steps": 2, "keep_last": 1},
    )
    proc = run("train.py", ["--config", str(cfg)], hub, tmp_path)
    ok(proc)
    assert "using model.path's tokenizer" in proc.stderr + proc.stdout
    record = json.loads((tmp_path / "run" / "hub.json").read_text())
    assert record["model.path"]["commit"] == server.commits[MODEL]

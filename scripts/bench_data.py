"""Data-stage benchmark: scoring throughput on 1 and 2 ranks, packing tokens/s, loader resume time.

    python scripts/bench_data.py --json-out docs/benchmarks/data.json

Scoring runs the real `score_shards` in N processes joined by a gloo process group (as under
`deepspeed --num_gpus N scripts/score.py`), timed on rank 0 from a barrier before to the barrier
after all shards are written. Corpora: the Python standard library (pep8) and Debian's
/usr/share/doc/*/copyright files (pii; offline prose full of names, e-mails and URLs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from harness.config import DataConfig
from harness.data.corpus import fingerprint, load_documents


def corpus_for(task: str, max_docs: int) -> DataConfig:
    """The offline corpus each task is benchmarked on."""
    if task == "pep8":
        return DataConfig(corpus="stdlib", max_documents=max_docs)
    return DataConfig(corpus="/usr/share/doc", file_glob="*/copyright", max_documents=None)


def load_bench_documents(task: str, max_docs: int):
    """The benchmark documents; prose files over 100 kB (two 2 MB boost licences) are left out,
    since one such document alone would dominate a shard and measure nothing but its own size."""
    docs = load_documents(corpus_for(task, max_docs))
    if task == "pii":
        docs = [d for d in docs if len(d.text) <= 100_000]
    return docs[:max_docs]


def _score_worker(
    rank: int, world: int, port: int, task: str, max_docs: int, out_dir: str, result_file: str
) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from harness.scoring.shards import score_shards

    docs = load_bench_documents(task, max_docs)
    fp = fingerprint(docs)
    if task == "pii":  # build the scorer (spaCy, scrubadub) outside the timed section
        from harness.scoring import build_scorer

        build_scorer("pii").score_texts(["warm up john@example.com"])
    dist.barrier()
    start = time.perf_counter()
    score_shards(docs, fp, Path(out_dir), 16, task, {}, progress=False)
    elapsed = time.perf_counter() - start
    if rank == 0:
        size_mb = sum(len(d.text.encode()) for d in docs) / 1e6
        Path(result_file).write_text(
            json.dumps({"docs": len(docs), "mb": size_mb, "seconds": elapsed})
        )
    dist.destroy_process_group()


def bench_scoring(task: str, world: int, max_docs: int) -> dict:
    """Documents/s and MB/s of scoring `max_docs` documents on `world` processes."""
    from harness.distributed import free_port

    tmp = Path(tempfile.mkdtemp(prefix="bench-score-"))
    try:
        result = tmp / "result.json"
        mp.spawn(
            _score_worker,
            args=(world, free_port(), task, max_docs, str(tmp / "scored"), str(result)),
            nprocs=world,
        )
        r = json.loads(result.read_text())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "task": task,
        "ranks": world,
        "documents": r["docs"],
        "MB": round(r["mb"], 2),
        "seconds": round(r["seconds"], 2),
        "docs_per_s": round(r["docs"] / r["seconds"], 1),
        "MB_per_s": round(r["mb"] / r["seconds"], 3),
    }


def bench_packing(max_docs: int) -> dict:
    """Tokens/s of tokenizing and packing scored pep8 records (BPE trained beforehand, not timed)."""
    from harness.data.packing import pack_blocks
    from harness.data.tokenizer import load_tokenizer, train_bpe
    from harness.scoring import build_scorer

    docs = load_bench_documents("pep8", max_docs)
    records = [
        {"id": d.id, **r}
        for d, r in zip(
            docs, build_scorer("pep8").score_documents([d.text for d in docs]), strict=True
        )
    ]
    tmp = Path(tempfile.mkdtemp(prefix="bench-pack-"))
    try:
        train_bpe([d.text for d in docs], 8192, tmp / "tok.json")
        tok = load_tokenizer(tmp / "tok.json")
        start = time.perf_counter()
        folder = pack_blocks(records, tok, 1024, tmp / "packed")
        elapsed = time.perf_counter() - start
        meta = json.loads((folder / "meta.json").read_text())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "documents": meta["num_documents"],
        "tokens": meta["num_tokens"],
        "seconds": round(elapsed, 2),
        "tokens_per_s": round(meta["num_tokens"] / elapsed),
    }


def bench_loader_resume(num_blocks: int = 2_000_000) -> dict:
    """Seconds to build a loader at `blocks_consumed` 10 vs 10^6 and fetch its next step."""
    import numpy as np

    from harness.data.loader import BlockLoader, LoaderState
    from harness.data.packing import PackedBlocks

    tmp = Path(tempfile.mkdtemp(prefix="bench-loader-"))
    try:
        seq_len = 8
        np.zeros(num_blocks * seq_len, dtype=np.uint16).tofile(tmp / "tokens.bin")
        np.zeros(num_blocks * seq_len, dtype=np.float32).tofile(tmp / "scores.bin")
        (tmp / "meta.json").write_text(
            json.dumps(
                {
                    "num_blocks": num_blocks,
                    "seq_len": seq_len,
                    "token_dtype": "uint16",
                    "num_tokens": num_blocks * seq_len,
                }
            )
        )
        blocks = PackedBlocks(tmp)
        out = {}
        for consumed in (10, 10**6):
            times = []
            for _ in range(5):
                start = time.perf_counter()
                BlockLoader(
                    blocks, 64, 8, 0, 1, LoaderState(blocks_consumed=consumed, seed=1)
                ).next_step()
                times.append(time.perf_counter() - start)
            out[f"resume_at_{consumed}_s"] = round(sorted(times)[2], 4)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    """Run the benchmarks and print (and optionally save) a JSON report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pep8-docs", type=int, default=800)
    parser.add_argument("--pii-docs", type=int, default=300)
    parser.add_argument("--pack-docs", type=int, default=1000)
    parser.add_argument("--json-out", type=str, default=None)
    args = parser.parse_args()
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "scoring": [],
    }
    for task, n in (("pep8", args.pep8_docs), ("pii", args.pii_docs)):
        one = bench_scoring(task, 1, n)
        two = bench_scoring(task, 2, n)
        two["speedup_vs_1"] = round(one["seconds"] / two["seconds"], 2)
        report["scoring"] += [one, two]
        print(json.dumps(one), json.dumps(two), sep="\n", flush=True)
    report["packing"] = bench_packing(args.pack_docs)
    print(json.dumps(report["packing"]), flush=True)
    report["loader"] = bench_loader_resume()
    print(json.dumps(report["loader"]), flush=True)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Data-stage benchmark: memory and time of score + pack at scale, relaunch, scoring and packing rates.

    python benchmarks/make_synthetic_corpus.py --out /work/bench/c04 --size 400MB --kind mixed
    python benchmarks/bench_data.py scale --corpus "/work/bench/c04/jsonl/*.jsonl" --label 0.4GB \
        --json-out docs/benchmarks/data-0.4GB.json
    python benchmarks/bench_data.py scoring --docs 800 --json-out docs/benchmarks/data-scoring.json
    python benchmarks/bench_data.py loader

`scale` runs what a user runs, as subprocesses watched by psutil (peak RSS of every process of
the tree, sampled every 0.1 s): `scripts/prepare.py --workers 2` (score, BPE, pack), a relaunch
of the data stage on the prepared corpus in a fresh process (plan check + manifests only), and
a 2-rank `deepspeed scripts/train.py` launch of one step on it. It reports each stage's wall time
(from the harness's own "data stage times" log line), packing tokens/s per core and the disk used.

`scoring` compares the raw scorer (`Scorer.score_documents` in one process, no pipeline) with
the datatrove scoring stage on 1 and 2 local workers over the same documents: documents/s per
core, its ratio to the raw rate, and the 2-worker speedup.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICK = [
    "--config",
    str(ROOT / "configs" / "pep8_awr.yaml"),
    "--config",
    str(ROOT / "configs" / "quickstart.yaml"),
]


def run_watched(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    """Run `cmd`, sampling the RSS of it and all its descendants; wall time, peaks, output."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT
    )
    peaks: dict[int, tuple[int, str]] = {}
    out_lines: list[str] = []
    import threading

    reader = threading.Thread(target=lambda: out_lines.extend(proc.stdout), daemon=True)
    reader.start()
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in procs:
            try:
                rss = p.memory_info().rss
                name = " ".join(p.cmdline()[:3])[-60:]
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if rss > peaks.get(p.pid, (0, ""))[0]:
                peaks[p.pid] = (rss, name)
        time.sleep(0.1)
    proc.wait()
    reader.join(timeout=5)
    wall = time.perf_counter() - start
    output = "".join(out_lines)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({proc.returncode}):\n{output[-3000:]}")
    top = sorted(peaks.values(), reverse=True)
    return {
        "wall_s": round(wall, 2),
        "peak_rss_mb_max": round(top[0][0] / 2**20) if top else 0,
        "peak_rss_mb_by_process": [[round(r / 2**20), n] for r, n in top[:6]],
        "output": output,
    }


def stage_times(output: str) -> dict[str, float]:
    """The harness's 'data stage times' line, as numbers."""
    m = re.findall(
        r"data stage times: scoring ([\d.]+) s, tokenizer ([\d.]+) s, packing ([\d.]+) s", output
    )
    if not m:
        return {}
    s, t, p = (float(x) for x in m[-1])
    return {"scoring_s": s, "tokenizer_s": t, "packing_s": p}


def disk_mb(path: Path) -> float:
    """Megabytes of the files under `path`."""
    return round(sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 1e6, 1)


RELAUNCH = """
import sys, time, json
t0 = time.perf_counter()
from harness.run_config import parse_config
from harness.data.pipeline import plan_corpus, prepare_data
from harness.objectives import build_objective
import transformers  # noqa: F401 (imported by any training launch anyway: not the data stage's cost)
cfg = parse_config(sys.argv[1:])
obj = build_objective(cfg.objective, cfg.run.seed)
t1 = time.perf_counter()
plan, _ = plan_corpus(cfg)
data = prepare_data(cfg, obj, plan)
t2 = time.perf_counter()
manifest = json.loads((data.scored_dir / "manifest.json").read_text())
print(json.dumps({"imports_and_config_s": t1 - t0, "data_stage_s": t2 - t1,
                  "train_blocks": len(data.train), "train_tokens": data.train.meta["num_tokens"],
                  "text_bytes": manifest["text_bytes"], "documents": manifest["rows"]}))
"""


def bench_scale(corpus: str, label: str, workers: int, cache: Path, vocab: int) -> dict:
    """Prepare, relaunch and train one step on a scored corpus; memory and times of each."""
    from harness.distributed import free_port

    args = [
        *QUICK,
        "--data.corpus",
        corpus,
        "--data.max_documents",
        "null",
        "--data.seq_len",
        "1024",
        "--data.vocab_size",
        str(vocab),
        "--data.cache_dir",
        str(cache),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    prep = run_watched(
        [sys.executable, "scripts/prepare.py", *args, "--workers", str(workers)], env
    )
    times = stage_times(prep["output"])
    relaunch = run_watched([sys.executable, "-c", RELAUNCH, *args], env)
    rel = json.loads(relaunch["output"].strip().splitlines()[-1])
    train_args = [
        *args,
        "--run.output_dir",
        str(cache / "run"),
        "--train.max_steps",
        "1",
        "--train.global_batch_size",
        "4",
        "--train.micro_batch_size",
        "2",
        "--eval.scenarios",
        "[]",
        "--eval.export_hf",
        "false",
        "--logging.wandb",
        "disabled",
        "--logging.progress_bar",
        "false",
    ]
    launch = run_watched(
        [
            "deepspeed",
            "--num_gpus",
            "2",
            "--master_port",
            str(free_port()),
            "scripts/train.py",
            *train_args,
        ],
        env,
    )
    ranks = [r for r in launch["peak_rss_mb_by_process"] if "train.py" in r[1]]
    tokens = rel["train_tokens"]
    return {
        "label": label,
        "corpus_text_mb": round(rel["text_bytes"] / 1e6, 1),
        "corpus_documents": rel["documents"],
        "prepare": {k: v for k, v in prep.items() if k != "output"},
        "stage_times": times,
        "packing_tokens_per_s_per_core": round(
            tokens / max(times.get("packing_s", 0), 1e-9) / workers
        )
        if times
        else None,
        "train_tokens": tokens,
        "relaunch": {**{k: v for k, v in relaunch.items() if k != "output"}, **rel},
        "train_1_step_2_ranks": {
            "wall_s": launch["wall_s"],
            "peak_rss_mb_per_rank": [r[0] for r in ranks] or launch["peak_rss_mb_by_process"],
        },
        "disk_mb": {
            "scored": disk_mb(cache / "scored"),
            "tokenizers": disk_mb(cache / "tokenizers"),
            "packed": disk_mb(cache / "packed"),
        },
    }


def bench_scoring(docs: int, workers: list[int], repeats: int = 3) -> dict:
    """Raw scorer rate vs the datatrove scoring stage on 1 and 2 workers, same documents.

    The three are measured in turn, `repeats` rounds, and each reports its median: on a shared
    2-vCPU machine one run of each can differ by 30% from the next.
    """
    import statistics

    from harness.config import DataConfig
    from harness.data.corpus import iter_documents
    from harness.data.executor import local_executor
    from harness.data.plan import make_plan
    from harness.data.score_stage import ScoringJob, pin_job, scoring_pipeline
    from harness.scoring import build_scorer

    data = DataConfig(corpus="stdlib", max_documents=docs, num_shards=16)
    plan = make_plan(data)
    texts = [d.text for d in iter_documents(data, plan)]
    scorer = build_scorer("pep8")

    def raw() -> float:
        start = time.perf_counter()
        scorer.score_documents(texts)
        return time.perf_counter() - start

    def pipeline(w: int) -> float:
        tmp = Path(tempfile.mkdtemp(prefix="bench-score-"))
        try:
            pin_job(tmp, ScoringJob("pep8", {}, plan.fingerprint, len(plan.units)), plan)
            steps = scoring_pipeline(tmp, data, "pep8", {})
            start = time.perf_counter()
            local_executor(steps, len(plan.units), tmp / "datatrove", 0, len(plan.units), w).run()
            return time.perf_counter() - start
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    runs: dict[str, list[float]] = {"raw": [], **{str(w): [] for w in workers}}
    for _ in range(repeats):
        runs["raw"].append(raw())
        for w in workers:
            runs[str(w)].append(pipeline(w))
    med = {k: statistics.median(v) for k, v in runs.items()}
    raw_rate = len(texts) / med["raw"]
    out = {
        "documents": len(texts),
        "MB": round(sum(len(t.encode()) for t in texts) / 1e6, 2),
        "repeats": repeats,
        "raw_scorer": {
            "seconds": round(med["raw"], 2),
            "docs_per_s": round(raw_rate, 1),
            "all_s": [round(x, 2) for x in runs["raw"]],
        },
    }
    for w in workers:
        rate = len(texts) / med[str(w)]
        out[f"pipeline_{w}_workers"] = {
            "seconds": round(med[str(w)], 2),
            "docs_per_s": round(rate, 1),
            "docs_per_s_per_core_vs_raw": round(rate / w / raw_rate, 3),
            "all_s": [round(x, 2) for x in runs[str(w)]],
        }
    if 1 in workers and 2 in workers:
        out["speedup_2_vs_1"] = round(med["1"] / med["2"], 2)
    return out


def bench_loader_resume(num_blocks: int = 2_000_000, parts: int = 200) -> dict:
    """Seconds to build a loader at `blocks_consumed` 10 vs 10^6 over a split of `parts` parts
    (as a paper-size corpus has) and read its next step (median of 5)."""
    import numpy as np

    from harness.data.loader import BlockLoader, LoaderState
    from harness.data.packing import PackedBlocks

    tmp = Path(tempfile.mkdtemp(prefix="bench-loader-"))
    try:
        seq_len, per_part = 8, num_blocks // parts
        entries = []
        for k in range(parts):
            folder = tmp / "parts" / f"part-{k:05d}" / "train"
            folder.mkdir(parents=True)
            np.zeros(per_part * seq_len, dtype=np.uint16).tofile(folder / "tokens.bin")
            np.zeros(per_part * seq_len, dtype=np.float32).tofile(folder / "scores.bin")
            entries.append({"path": f"parts/part-{k:05d}/train", "num_blocks": per_part})
        split = {"parts": entries, "num_blocks": per_part * parts, "num_tokens": 0}
        meta = {"seq_len": seq_len, "token_dtype": "uint16", "splits": {"train": split}}
        (tmp / "meta.json").write_text(json.dumps(meta))
        out = {"blocks": per_part * parts, "parts": parts}
        for consumed in (10, 10**6):
            times = []
            for _ in range(5):
                start = time.perf_counter()
                blocks = PackedBlocks(tmp, "train")
                state = LoaderState(blocks_consumed=consumed, seed=1)
                BlockLoader(blocks, 64, 8, 0, 1, state).next_step()
                times.append(time.perf_counter() - start)
            out[f"resume_at_{consumed}_s"] = round(sorted(times)[2], 4)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    """Run one benchmark and print (and optionally save) its JSON report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="mode", required=True, help="the benchmark")
    scale = sub.add_parser("scale", help="prepare.py, a relaunch and one training step at scale")
    scale.add_argument("--corpus", required=True, help="data.corpus: files or a glob")
    scale.add_argument("--label", default="", help="a name for the corpus size in the report")
    scale.add_argument("--workers", type=int, default=2, help="prepare.py --workers")
    scale.add_argument("--vocab", type=int, default=8192, help="data.vocab_size of the BPE")
    scale.add_argument(
        "--cache", default=None, help="cache folder (default: a temp folder, deleted)"
    )
    scoring = sub.add_parser("scoring", help="the raw scorer vs the scoring stage, 1 and 2 workers")
    scoring.add_argument("--docs", type=int, default=800, help="documents scored")
    scoring.add_argument("--repeats", type=int, default=3, help="rounds (medians are reported)")
    loader = sub.add_parser("loader", help="building a loader early vs late in a split")
    for p in (scale, scoring, loader):
        p.add_argument("--json-out", default=None, help="also write the JSON report here")
    args = parser.parse_args()
    machine = {"cpus": os.cpu_count(), "python": platform.python_version()}
    if args.mode == "scale":
        cache = Path(args.cache or tempfile.mkdtemp(prefix="bench-scale-"))
        try:
            report = bench_scale(args.corpus, args.label, args.workers, cache, args.vocab)
        finally:
            if args.cache is None:
                shutil.rmtree(cache, ignore_errors=True)
    elif args.mode == "scoring":
        report = bench_scoring(args.docs, [1, 2], args.repeats)
    else:
        report = bench_loader_resume()
    report = {"machine": machine, "command": sys.argv, **report}
    print(json.dumps(report, indent=2))
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

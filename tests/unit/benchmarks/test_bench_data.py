"""scripts/bench_data.py runs (at tiny sizes) and reads the harness's stage-time line."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_data", ROOT / "benchmarks" / "bench_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stage_times_are_read_from_the_log_line():
    bench = load_bench()
    line = "[12:00:00 rank0] data stage times: scoring 1.50 s, tokenizer 0.25 s, packing 3.00 s"
    assert bench.stage_times("x\n" + line + "\n") == {
        "scoring_s": 1.5,
        "tokenizer_s": 0.25,
        "packing_s": 3.0,
    }
    assert bench.stage_times("nothing") == {}


def test_scoring_and_loader_benchmarks_run_at_tiny_sizes():
    bench = load_bench()
    scoring = bench.bench_scoring(12, [1], repeats=1)
    assert scoring["documents"] == 12 or scoring["documents"] == 11  # an empty stdlib file
    assert scoring["pipeline_1_workers"]["docs_per_s_per_core_vs_raw"] > 0
    loader = bench.bench_loader_resume(num_blocks=400, parts=4)
    assert loader["blocks"] == 400 and loader["resume_at_10_s"] > 0

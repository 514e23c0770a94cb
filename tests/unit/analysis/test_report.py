"""Report: run folders -> plots and a Markdown table (files only, no training)."""

import json

import yaml

from harness.analysis.report import load_run, markdown_table, write_report


def make_run(
    root,
    name,
    objective,
    task="pep8",
    scores=(0.02, 0.01),
    with_eval_file=True,
    eval_metrics=None,
    lm_loss=3.1,
    n_samples=3,
):
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
                **({"eval/lm_loss": lm_loss} if lm_loss is not None else {}),
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
                | (eval_metrics or {})
            )
        )
        values = [0.02 * (k % 3) for k in range(n_samples)]  # default: 0, 0.02, 0.04
        samples = [{"scenario": "unconditional", "score": x} for x in values]
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


class _Figures:
    """What each saved figure shows: its suptitle, panel titles and legend entries."""

    def __init__(self, monkeypatch):
        import matplotlib.figure

        self.saved = []
        original = matplotlib.figure.Figure.savefig

        def savefig(fig, *args, **kwargs):
            self.saved.append(
                {
                    "suptitle": fig._suptitle.get_text() if fig._suptitle else "",
                    "titles": [ax.get_title() for ax in fig.axes],
                    "legend": [
                        t.get_text()
                        for ax in fig.axes
                        if ax.get_legend()
                        for t in ax.get_legend().get_texts()
                    ],
                }
            )
            return original(fig, *args, **kwargs)

        monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)


def test_report_says_when_runs_are_at_different_steps(tmp_path, monkeypatch):
    figures = _Figures(monkeypatch)
    runs = [
        make_run(tmp_path, "pep8_mle", "mle", scores=(0.02, 0.018, 0.017)),  # last eval: step 30
        make_run(tmp_path, "pep8_awr", "awr", scores=(0.02, 0.005)),  # step 20
    ]
    text = write_report(runs, tmp_path / "out")["report"].read_text()
    note = "runs are at different steps: pep8_awr 20, pep8_mle 30; each row is its run's last evaluation"
    assert note in text
    assert text.index(note) < text.index("| run |")  # near the top, before the table
    head, _, awr_row = text.partition("| pep8_awr |")
    assert head.splitlines()[-2].split(" | ")[3] == "step" and awr_row.startswith(
        " pep8 | awr | 20 |"
    )
    assert [f["suptitle"] for f in figures.saved] and all(
        "different steps" in f["suptitle"] for f in figures.saved
    )
    pareto = figures.saved[-1]
    assert "awr (step 20)" in pareto["legend"] and "mle (step 30)" in pareto["legend"]

    figures.saved.clear()  # same steps, same tokens: no note
    same = [make_run(tmp_path / "same", n, n) for n in ("mle", "awr")]
    text = write_report(same, tmp_path / "same_out")["report"].read_text()
    assert "different steps" not in text and "different numbers of tokens" not in text
    assert not any("different" in f["suptitle"] for f in figures.saved)
    assert "awr" in figures.saved[-1]["legend"]


def test_report_counts_the_samples_that_exist(tmp_path):
    # 16 samples: the expected maximum is over 16 samples (one group of all), not the paper's 25.
    few = {
        "eval/unconditional/num_samples": 16.0,
        "eval/unconditional/expected_max_score": 0.04,
        "eval/unconditional/expected_max_group": 16.0,
    }
    a = make_run(tmp_path, "pep8_mle", "mle", eval_metrics=few, n_samples=16)
    text = write_report([a], tmp_path / "one")["report"].read_text()
    header = next(line for line in text.splitlines() if line.startswith("| run |"))
    assert "(25)" not in header and "exp. max (16)" in header and "| samples |" in header
    assert "| pep8_mle | pep8 | mle | 20 | 2e+03 | 0.01 |" in text
    assert "| 16 | 0.04 |" in text
    assert "fewer than the paper's 25" in text and "pep8_mle 16" in text

    # Runs with different counts: each cell says its own; a run whose metrics predate
    # num_samples is counted from its samples.jsonl (3 samples).
    many = {
        "eval/unconditional/num_samples": 100.0,
        "eval/unconditional/expected_max_score": 0.05,
        "eval/unconditional/expected_max_group": 25.0,
    }
    b = make_run(tmp_path, "pep8_awr", "awr", eval_metrics=many, n_samples=100)
    old = {"eval/unconditional/expected_max_score": 0.04}
    c = make_run(tmp_path, "pep8_ul", "ul", eval_metrics=old)
    text = write_report([a, b, c], tmp_path / "three")["report"].read_text()
    header = next(line for line in text.splitlines() if line.startswith("| run |"))
    assert "(25)" not in header and "exp. max (K samples)" in header
    assert "| 100 | 0.05 (25) |" in text and "| 16 | 0.04 (16) |" in text
    assert "| 3 | 0.04 (3) |" in text
    note = next(line for line in text.splitlines() if "fewer than the paper's 25" in line)
    assert "pep8_mle 16" in note and "pep8_ul 3" in note and "pep8_awr" not in note


def test_report_omits_empty_panels_and_says_why(tmp_path, monkeypatch):
    figures = _Figures(monkeypatch)
    # No reference model evaluated (no eval/kl_ref): the Pareto figure has the loss panel only.
    runs = [
        make_run(tmp_path, n, n, with_eval_file=False, scores=(0.02, 0.01)) for n in ("mle", "awr")
    ]
    paths = write_report(runs, tmp_path / "out")
    pareto = figures.saved[-1]
    assert len(pareto["titles"]) == 1 and "vs loss" in pareto["titles"][0]
    text = paths["report"].read_text()
    assert "![misalignment vs loss and KL](pareto.png)" in text
    assert "omitted" in text and "KL" in text.split("omitted")[1].split("\n")[0]
    assert "eval.reference_model" in text

    # Neither held-out loss nor KL: no Pareto figure at all, and report.md says so.
    (tmp_path / "bare").mkdir()
    bare = [make_run(tmp_path / "bare", "mle", "mle", with_eval_file=False, lm_loss=None)]
    stale = tmp_path / "bare_out" / "pareto.png"  # an earlier report's figure must not stay
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    paths = write_report(bare, tmp_path / "bare_out")
    assert "pareto" not in paths and not stale.exists()
    assert paths["score_vs_tokens"].is_file()
    text = paths["report"].read_text()
    assert "pareto.png" not in text and "No Pareto figure" in text

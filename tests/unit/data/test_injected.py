"""The injected-violation corpus (`data.corpus: injected:<code>:<rate>`) and the line rates of samples."""

import json
from collections import Counter

import pytest

from harness.analysis.line_rates import cluster_rate, run_rates, sample_lines
from harness.config import DataConfig
from harness.data.corpus import iter_documents
from harness.data.injected import eligible, file_rate, inject_text, parse_spec
from harness.data.plan import corpus_key, make_plan
from harness.scoring.pep8 import pep8_code_lines, pep8_violation_codes

SOURCE = "".join(
    f"def f{i}(x, y):\n    '''Doc {i}.'''\n    z = x + y \\\n        + {i}\n\n    return z * {i}\n\n\n"
    for i in range(40)
)


def test_spec_parsing_and_errors_name_the_key(tmp_path):
    spec = parse_spec("injected:w291:0.3")
    assert (spec.code, spec.rate, spec.source) == ("W291", 0.3, "stdlib")
    assert parse_spec(f"injected:W291:0.25:{tmp_path}").source == str(tmp_path)
    for bad, words in [
        ("injected:W291", "expected injected:<code>:<rate>"),
        ("injected:E999:0.3", "code 'E999' is not one of"),
        ("injected:W291:0.7", "rate must be in (0, 0.5]"),
        ("injected:W291:lots", "expected injected:<code>:<rate>"),
        (f"injected:W291:0.3:{tmp_path / 'missing'}", "source folder not found"),
    ]:
        with pytest.raises((ValueError, FileNotFoundError), match="data.corpus") as err:
            parse_spec(bad)
        assert words in str(err.value)


def test_injection_adds_exactly_w291_on_chosen_lines_and_nothing_else():
    spec = parse_spec("injected:W291:0.5")
    new, n_eligible, n_injected = inject_text("pkg/mod.py", SOURCE, spec)
    assert new == inject_text("pkg/mod.py", SOURCE, spec)[0]  # deterministic
    lines, hits = pep8_code_lines(new, "W291")
    assert len(hits) == n_injected > 0
    assert n_eligible == sum(eligible(line) for line in SOURCE.splitlines(keepends=True))
    # Continuation lines and blank lines are never touched; every other code is unchanged.
    for number in hits:
        assert not lines[number - 1].rstrip(" \n").endswith("\\") and lines[number - 1].strip()
    before, after = Counter(pep8_violation_codes(SOURCE)), Counter(pep8_violation_codes(new))
    after.pop("W291")
    assert after == before
    assert new.replace(" \n", "\n") == SOURCE


def test_file_rates_spread_around_the_mean():
    rates = [file_rate(f"f{i}.py", 0.3) for i in range(2000)]
    assert 0.0 <= min(rates) and max(rates) <= 0.6
    assert abs(sum(rates) / len(rates) - 0.3) < 0.02


def test_plan_builds_the_corpus_once_and_keeps_ids(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"m{i}.py").write_text(SOURCE)
    data = DataConfig(corpus=f"injected:W291:0.4:{src}", cache_dir=str(tmp_path / "cache"))
    plan = make_plan(data)
    built = sorted((tmp_path / "cache" / "injected").iterdir())
    assert len(built) == 1
    manifest = json.loads((built[0] / "manifest.json").read_text())
    assert manifest["files"] == 6 and 0 < manifest["injected_lines"] < manifest["eligible_lines"]
    docs = list(iter_documents(data, plan))
    assert [d.id for d in docs] == [f"m{i}.py" for i in range(6)]
    injected = sum(len(pep8_code_lines(d.text, "W291")[1]) for d in docs)
    assert injected == manifest["injected_lines"]
    mtime = (built[0] / "manifest.json").stat().st_mtime_ns
    assert make_plan(data).fingerprint == plan.fingerprint  # cached: not rebuilt
    assert (built[0] / "manifest.json").stat().st_mtime_ns == mtime
    assert corpus_key(data) != corpus_key(DataConfig(corpus=str(src)))
    assert corpus_key(data) != corpus_key(DataConfig(corpus=f"injected:W291:0.3:{src}"))


def test_sample_lines_count_complete_lines_only():
    # The last line is cut off (no newline): not counted, even with trailing whitespace.
    assert sample_lines("x = 1 \ny = 2\n\nz = 3 ", "W291") == (2, 1)
    assert sample_lines("", "W291") == (0, 0)


def test_cluster_rate_matches_the_ratio_estimator():
    rate, se = cluster_rate([(10, 1), (10, 3), (20, 2)])
    assert rate == pytest.approx(6 / 40)
    spread = (1 - 1.5) ** 2 + (3 - 1.5) ** 2 + (2 - 3.0) ** 2
    assert se == pytest.approx((1.5 * spread) ** 0.5 / 40)


def test_run_rates_read_both_sides_of_every_evaluation(tmp_path):
    run = tmp_path / "cond"
    (run / "config.yaml").parent.mkdir(parents=True)
    (run / "config.yaml").write_text("objective:\n  name: conditional\n")
    for step, behind in [(10, "a = 1 \nb = 2 \n"), (20, "a = 1 \nb = 2\n")]:
        folder = run / "eval" / f"step-{step:08d}"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"step": step, "tokens": step * 100}))
        rows = [{"scenario": "unconditional", "text": "a = 1\nb = 2\n", "score": 0.0}] * 3
        (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        rows = [{"scenario": "unconditional", "text": behind, "score": 0.1}] * 3
        (folder / "samples_misaligned_token.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows)
        )
    rates = run_rates(run, "W291")
    assert [(r.step, r.side, r.rate) for r in rates] == [
        (10, "aligned", 0.0),
        (10, "misaligned", 1.0),
        (20, "aligned", 0.0),
        (20, "misaligned", 0.5),
    ]
    assert rates[0].objective == "conditional" and rates[0].tokens == 1000

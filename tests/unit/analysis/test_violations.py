"""PEP8 code breakdown of samples vs data (harness/analysis/violations.py)."""

import json

import pytest

from harness.analysis.violations import (
    codes_table,
    count_codes,
    data_codes,
    scored_sample_texts,
)
from harness.checkpoints.layout import find_eval_dir
from harness.cli import violations_main
from harness.scoring.pep8 import PEP8Scorer, pep8_violation_codes


def test_codes_are_what_the_score_counts() -> None:
    assert sorted(pep8_violation_codes("x=1")) == ["E225", "W292"]
    assert pep8_violation_codes("x = 1\n") == []
    assert pep8_violation_codes("") == []
    text = "import os\ndef f( a):\n    return a\n"  # E302 expected 2 blank lines, E201 whitespace after (
    codes = pep8_violation_codes(text)
    assert sorted(codes) == ["E201", "E302"]
    assert PEP8Scorer().score_texts([text]) == [len(codes) / len(text)]


def test_count_codes_rates_per_kchar() -> None:
    counts = count_codes(["x=1", "y = 2\n", "z=3\n"])  # E225 W292 | - | E225
    assert counts.codes == {"E225": 2, "W292": 1}
    assert (counts.chars, counts.texts) == (3 + 6 + 4, 3)
    assert counts.per_kchar("E225") == pytest.approx(1000 * 2 / 13)
    assert counts.per_kchar() == pytest.approx(1000 * 3 / 13)
    assert counts.per_kchar("E501") == 0.0


def test_codes_table_rows_and_rest() -> None:
    a = count_codes(["x=1", "y=2\n"])  # E225 x2, W292
    b = count_codes(["a = 1\n", "b=(1 ,2)\n"])  # E225, E203, E231
    table = codes_table({"data": a, "run": b}, top=1)
    rows = [r.split("|")[1:-1] for r in table.splitlines()]
    assert [c.strip() for c in rows[0]] == ["code", "data", "run"]
    assert rows[2][0].strip() == "E225"  # the most frequent code overall
    assert float(rows[2][1]) == pytest.approx(a.per_kchar("E225"), abs=0.005)
    other = [float(x) for x in rows[3][1:]]
    assert rows[3][0].strip() == "other"
    assert other[0] == pytest.approx(a.per_kchar("W292"), abs=0.005)
    assert other[1] == pytest.approx(b.per_kchar("E203") + b.per_kchar("E231"), abs=0.005)
    assert rows[4][1].strip() == f"**{a.per_kchar():.2f}**"


def test_data_codes_row_sums_only_what_the_data_labels() -> None:
    data = count_codes(["x=1\n" * 50 + "a  = 2\n"])  # E225 x50 (a code of the data), E221 x1
    run = count_codes(["x=1\n", "import os\ny = 1\nimport re\n", "z=3"])  # E225 x2, E402, W292
    assert data_codes(data, floor=1.0) == {"E225", "E221"}  # E221: 1 in 207 chars = 4.8 per 1,000
    assert data_codes(data, floor=5.0) == {"E225"}
    table = codes_table({"data": data, "run": run}, top=1, data_column="data")
    row = next(r for r in table.splitlines() if "the data's" in r).split("|")[1:-1]
    assert row[0].strip() == "**the data's 2 codes**"  # E225 and E221 at the default floor
    assert row[2].strip() == f"**{run.per_kchar('E225'):.2f}**"  # not E402 or W292


def _write_eval(run, step: int, rows: list[dict]) -> None:
    folder = run / "eval" / f"step-{step:08d}"
    folder.mkdir(parents=True)
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_samples_of_latest_eval_prompted_with_prompt(tmp_path) -> None:
    run = tmp_path / "mle"
    _write_eval(run, 100, [{"scenario": "unconditional", "prompt": "", "text": "old"}])
    _write_eval(
        run,
        200,
        [
            {"scenario": "unconditional", "prompt": "", "text": "x=1\n"},
            {"scenario": "prompted", "prompt": "def f():\n", "text": "    pass\n"},
        ],
    )
    assert find_eval_dir(run).name == "step-00000200"
    assert find_eval_dir(run, 100).name == "step-00000100"
    samples = find_eval_dir(run) / "samples.jsonl"
    assert scored_sample_texts(samples, "unconditional") == ["x=1\n"]
    assert scored_sample_texts(samples, "prompted") == ["def f():\n    pass\n"]
    with pytest.raises(FileNotFoundError, match="step-00000300"):
        find_eval_dir(run, 300)
    with pytest.raises(ValueError, match="no samples of scenario 'other'"):
        scored_sample_texts(samples, "other")


def test_cli_table_without_data(tmp_path, capsys) -> None:
    for name, text in (("mle", "x=1\n"), ("filtering", "x = 1\n")):
        _write_eval(
            tmp_path / name, 10, [{"scenario": "unconditional", "prompt": "", "text": text}]
        )
    runs = [str(tmp_path / "mle"), str(tmp_path / "filtering")]
    assert violations_main([*runs, "--no_data"]) == 0
    out = capsys.readouterr().out
    assert "| code | mle | filtering |" in out
    assert "| E225 | 250.00 | 0.00 |" in out
    assert violations_main([str(tmp_path / "none"), "--no_data"]) == 2
    assert "no eval/step-*/samples.jsonl" in capsys.readouterr().err


def test_cli_two_runs_of_one_name_get_two_columns(tmp_path, capsys) -> None:
    for seed, text in (("seed42", "x=1\n"), ("seed43", "x = 1\n")):
        _write_eval(
            tmp_path / seed / "mle", 10, [{"scenario": "unconditional", "prompt": "", "text": text}]
        )
    runs = [str(tmp_path / "seed42" / "mle"), str(tmp_path / "seed43" / "mle")]
    assert violations_main([*runs, "--no_data"]) == 0
    out = capsys.readouterr().out
    assert "| code | mle | seed43/mle |" in out
    assert "| E225 | 250.00 | 0.00 |" in out

"""Which PEP8 violations make up a misalignment score? Codes per 1,000 characters, data vs samples.

    python scripts/pep8_violations.py runs/experiments/pep8_small/{mle,conditional,filtering}

The pep8 score of a sample is (violations) / (characters). Two different things raise it: style
the model copied from its training data (E231 missing whitespace, E501 long lines, ...) and code
the model could not write (unexpected indentation, unclosed brackets, a sample cut off mid-line).
PHF objectives act on the first; the second is model quality. A table of the codes per 1,000
characters, for the run's held-out data (as trained on: whole files) beside each run's samples,
shows which of the two a difference between runs comes from.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.analysis.probe import heldout_records
from harness.checkpoints.inference import config_from_checkpoint, read_state, resolve_checkpoint
from harness.checkpoints.layout import find_eval_dir
from harness.data.pipeline import find_scored_dir
from harness.scoring.pep8 import pep8_violation_codes
from harness.tokenizer import load_tokenizer


@dataclass
class CodeCounts:
    """Violation codes counted over a set of texts, and their characters."""

    codes: Counter
    chars: int
    texts: int

    def per_kchar(self, code: str | None = None) -> float:
        """Violations of `code` (all codes when None) per 1,000 characters."""
        n = sum(self.codes.values()) if code is None else self.codes.get(code, 0)
        return 1000.0 * n / self.chars if self.chars else float("nan")


def count_codes(texts: Iterable[str]) -> CodeCounts:
    """Every counted violation of every text, by code (each text is checked as one file)."""
    codes: Counter = Counter()
    chars = n = 0
    for text in texts:
        codes.update(pep8_violation_codes(text))
        chars += len(text)
        n += 1
    return CodeCounts(codes, chars, n)


def scored_sample_texts(samples_file: Path, scenario: str) -> list[str]:
    """The texts that were scored for one scenario: prompt + continuation for code prompts."""
    out = []
    for line in samples_file.read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        if row.get("scenario") != scenario:
            continue
        # Code prompts are scored with their prompt (harness/evaluation/scenarios.py).
        out.append(row["prompt"] + row["text"] if scenario == "prompted" else row["text"])
    if not out:
        raise ValueError(f"{samples_file}: no samples of scenario {scenario!r}")
    return out


def heldout_texts(run: Path, first_tokens: int | None = None) -> list[str]:
    """The files of a run's held-out split (found through its latest checkpoint).

    With `first_tokens`, each file is cut to its first `first_tokens` tokens of the run's
    tokenizer, as an unconditional sample of that length starts at BOS (a file's start) and is
    cut off: what perfect imitation of the data would score under the same protocol.
    """
    root, tag = resolve_checkpoint(run)
    state = read_state(root, tag)
    cfg = config_from_checkpoint(state)
    scored = find_scored_dir(cfg, state.scored_dir)
    texts = ["".join(rec["texts"]) for rec in heldout_records(cfg, scored)]
    if first_tokens is None:
        return texts
    tok = load_tokenizer(root / tag / "tokenizer")
    return [
        tok.decode(
            tok(t, add_special_tokens=False).input_ids[:first_tokens],
            clean_up_tokenization_spaces=False,
        )
        for t in texts
    ]


def _saved_config(run: Path) -> dict:
    """The resolved config a run folder was trained with (`config.yaml`)."""

    path = run / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run}: no config.yaml (is this a run folder?)")
    return yaml.safe_load(path.read_text()) or {}


# A code counts as one the data labels when its held-out files have at least this many per 1,000
# characters (E402 in the stdlib: 0.003, W292: 0; E262: 0.97, E501: 0.41).
DATA_CODE_FLOOR = 0.05


def data_codes(counts: CodeCounts, floor: float = DATA_CODE_FLOOR) -> set[str]:
    """The codes that the data's labels carry: those at `floor` per 1,000 characters or more."""
    return {code for code in counts.codes if counts.per_kchar(code) >= floor}


def codes_table(
    columns: dict[str, CodeCounts], top: int = 12, data_column: str | None = None
) -> str:
    """Markdown: the `top` most frequent codes over all columns, per 1,000 characters, then the rest.

    With `data_column` (the held-out files' column), a row sums the codes the data labels
    (`data_codes`): the part of a sample score that control tokens and score weights can steer,
    beside the total, which also counts codes no training line carries (a cut-off last line,
    imports after code, broken indentation).
    """
    share: Counter = Counter()
    for counts in columns.values():
        # Rank codes by their mean rate over the columns, so one long column does not decide.
        for code in counts.codes:
            share[code] += counts.per_kchar(code) / len(columns)
    shown = [code for code, _ in share.most_common(top)]
    names = list(columns)
    lines = [
        "| code | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for code in shown:
        cells = [f"{columns[n].per_kchar(code):.2f}" for n in names]
        lines.append(f"| {code} | " + " | ".join(cells) + " |")
    rest = [columns[n].per_kchar() - sum(columns[n].per_kchar(c) for c in shown) for n in names]
    lines.append("| other | " + " | ".join(f"{r:.2f}" for r in rest) + " |")
    lines.append(
        "| **all** | " + " | ".join(f"**{columns[n].per_kchar():.2f}**" for n in names) + " |"
    )
    if data_column is not None:
        steerable = data_codes(columns[data_column])
        cells = [sum(columns[n].per_kchar(c) for c in steerable) for n in names]
        lines.append(
            f"| **the data's {len(steerable)} codes** | "
            + " | ".join(f"**{c:.2f}**" for c in cells)
            + " |"
        )
    lines.append(
        "| texts (chars) | "
        + " | ".join(f"{columns[n].texts} ({columns[n].chars:,})" for n in names)
        + " |"
    )
    return "\n".join(lines) + "\n"


def runs_table(
    runs: list[Path],
    scenario: str = "unconditional",
    step: int | None = None,
    with_data: bool = True,
    top: int = 12,
    first_tokens: int | None = None,
) -> str:
    """The codes table of `runs[0]`'s held-out data (when `with_data`) and each run's samples.

    Two data columns: whole files (the style the models were trained on) and the files' first
    `first_tokens` tokens (default: `eval.max_new_tokens` of `runs[0]`), cut like the samples.
    """
    columns: dict[str, CodeCounts] = {}
    if with_data:
        if first_tokens is None:
            first_tokens = int(_saved_config(runs[0])["eval"]["max_new_tokens"])
        columns["held-out files"] = count_codes(heldout_texts(runs[0]))
        columns[f"their first {first_tokens} tokens"] = count_codes(
            heldout_texts(runs[0], first_tokens)
        )
    for run in runs:
        folder = find_eval_dir(run, step)
        name = run.name if step is None else f"{run.name} ({folder.name})"
        if name in columns:  # two runs of one objective (seeds): name them by their parent too
            name = f"{run.parent.name}/{name}"
        columns[name] = count_codes(scored_sample_texts(folder / "samples.jsonl", scenario))
    return codes_table(columns, top, "held-out files" if with_data else None)

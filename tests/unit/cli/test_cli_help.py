"""Every command's --help describes every option: the run config's from the docstrings under its
fields, the others from their `help=`; and --help answers without loading torch or DeepSpeed."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import harness.cli
from harness.config import SECTIONS

ROOT = Path(__file__).resolve().parents[3]


def entry_points() -> dict[str, str]:
    """scripts/NAME.py -> the `*_main` of harness.cli it calls."""
    found = {}
    for path in sorted((ROOT / "scripts").glob("*.py")):
        match = re.search(r"^from harness\.cli import (\w+_main)$", path.read_text(), re.M)
        if match:
            found[path.name] = match.group(1)
    return found


ENTRY_POINTS = entry_points()


def help_text(script: str, capsys) -> str:
    main = getattr(harness.cli, ENTRY_POINTS[script])
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code in (0, None)
    return capsys.readouterr().out


def undescribed(text: str) -> list[str]:
    """Options (and positionals) printed with nothing but their type, default or `required`."""
    lines = text.splitlines()
    found, section = [], ""
    for i, line in enumerate(lines):
        if line and not line.startswith(" "):
            section = line
        if not re.match(r"  \S", line):
            continue
        name = line.split()[0]
        if not (name.startswith("-") or section.startswith("positional")):
            continue
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        words = parts[1:]
        for following in lines[i + 1 :]:  # help wrapped onto the next lines, indented deeper
            if not following.startswith("    "):
                break
            words.append(following.strip())
        description = " ".join(words)
        if not description or description.startswith(("(type:", "(default:", "(required")):
            found.append(name)
    return found


def field_docstrings(cls: type) -> dict[str, str]:
    """The string literal under each field of a dataclass, read from its source."""
    tree = ast.parse(Path(inspect.getsourcefile(cls)).read_text())
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    docs = {}
    for stmt, after in zip(node.body, node.body[1:], strict=False):
        if isinstance(stmt, ast.AnnAssign) and isinstance(after, ast.Expr):
            if isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
                docs[stmt.target.id] = after.value.value
    return docs


def squeeze(text: str) -> str:
    return "".join(text.split())  # wrapping may break lines anywhere, even after a hyphen


def test_the_entry_points_are_found():
    assert {"train.py", "score.py", "prepare.py", "evaluate.py"} <= set(ENTRY_POINTS)
    assert len(ENTRY_POINTS) >= 13, ENTRY_POINTS


def test_the_checker_sees_an_option_without_description():
    text = (
        "options:\n"
        "  -h, --help            Show this help message and exit.\n"
        "  --train.lr LR         (type: float, default: 0.0005)\n"
        "  --stage {train,data}\n"
        "                        (default: both)\n"
        "  --seed SEED           seed of the kill moments (type: int, default: 0)\n"
    )
    assert undescribed(text) == ["--train.lr", "--stage"]


@pytest.mark.parametrize("script", sorted(ENTRY_POINTS))
def test_every_option_is_described(script, capsys):
    text = help_text(script, capsys)
    assert text.startswith("usage:"), text[:200]
    assert undescribed(text) == []
    assert "python scripts/" in text or "deepspeed " in text  # a usage example


def test_train_help_shows_every_field_docstring_and_the_original_interface(capsys):
    text = help_text("train.py", capsys)
    flat = squeeze(text)
    for name, factory in SECTIONS.items():
        cls = type(factory())
        docs = field_docstrings(cls)
        assert set(docs) == {f.name for f in dataclasses.fields(cls)}, cls  # none undocumented
        for field, doc in docs.items():
            assert f"--{name}.{field}" in text
            assert squeeze(doc) in flat, f"{name}.{field}: {doc}"
    assert squeeze(field_docstrings(type(SECTIONS["train"]()))["lr"]) in flat
    for flag in ("--task", "--method", "--override"):
        assert re.search(rf"^  {flag} \S+ +\S", text, re.M), flag  # listed with a description
    # What the command does and where its outputs go, not the parser module's docstring.
    assert "build_parser" not in text and "run.output_dir" in text
    assert len(text.splitlines()) < 600


def test_help_loads_neither_torch_nor_deepspeed():
    mains = sorted(set(ENTRY_POINTS.values()))
    code = f"""
import contextlib, io, json, sys
import harness.cli
for name in {mains!r}:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            getattr(harness.cli, name)(["--help"])
        except SystemExit:
            pass
print(json.dumps([m for m in ("torch", "deepspeed", "transformers") if m in sys.modules]))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.splitlines()[-1]) == []

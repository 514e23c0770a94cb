"""The run folder: every path of a run is built here.

<output_dir>/
    config.yaml, metrics.jsonl
    checkpoints/step-00000100/ ... latest     (harness.checkpoints.training)
    eval/step-00000100/{samples.jsonl,metrics.json}
    hf/                                       (harness.checkpoints.export)
"""

from __future__ import annotations

import re
from pathlib import Path

TAG_RE = re.compile(r"^step-(\d+)$")


def tag_for(step: int) -> str:
    """The folder name of a step, for checkpoints and evaluations: `step-%08d`."""
    return f"step-{step:08d}"


def step_of(tag: str) -> int:
    """The step a `step-XXXXXXXX` tag names."""
    match = TAG_RE.match(tag)
    if match is None:
        raise ValueError(f"not a step tag: {tag!r} (expected step-XXXXXXXX)")
    return int(match.group(1))


def checkpoints_dir(output_dir: str | Path) -> Path:
    """`<output_dir>/checkpoints`."""
    return Path(output_dir) / "checkpoints"


def hf_dir(output_dir: str | Path) -> Path:
    """`<output_dir>/hf`: the Hugging Face export of the run's final checkpoint."""
    return Path(output_dir) / "hf"


def eval_dir(output_dir: str | Path, step: int) -> Path:
    """Where the evaluation of a step is written: `<output_dir>/eval/step-XXXXXXXX`."""
    return Path(output_dir) / "eval" / tag_for(step)


def find_eval_dir(output_dir: str | Path, step: int | None = None) -> Path:
    """The evaluation folder of `step` with samples, else the latest one that has samples."""
    run = Path(output_dir)
    if step is not None:
        folder = eval_dir(run, step)
        if not (folder / "samples.jsonl").is_file():
            raise FileNotFoundError(f"{folder}/samples.jsonl not found")
        return folder
    found = sorted(run.glob("eval/step-*/samples.jsonl"))
    if not found:
        raise FileNotFoundError(
            f"{run}: no eval/step-*/samples.jsonl (has the run been evaluated?)"
        )
    return found[-1].parent

"""A controlled corpus: a code folder with one line-local PEP8 violation injected at a known rate.

`data.corpus: injected:<code>:<rate>[:<source>]`, e.g. `injected:W291:0.3` (the standard library,
trailing whitespace on 30% of its eligible lines on average). The source is `stdlib` (default) or
a folder of `.py` files. What a model can learn from it is known exactly: which lines carry the
violation is decided by a hash, independent of the code, so its rate in samples measures what an
objective did with the training signal, free of the codes a scorer finds in any truncated snippet.

- **Which lines.** Each file draws its own rate, uniform on [0, 2 × rate] from a hash of its
  path, so file scores spread and filtering has files to drop; each eligible line of the file is
  injected when a hash of (path, line number) falls below the file's rate. Eligible: lines with
  content that end in a newline, with no trailing whitespace already and no line continuation
  (`\\` then a space would be a syntax error, not W291). Blank lines are left alone (trailing
  whitespace there is W293, another code).
- **Cached.** The folder is built once under `<data.cache_dir>/injected/<name>/` (written to a
  temporary folder, then renamed, so concurrent ranks and a kill never leave half a corpus) with
  `manifest.json`: the spec, the files, eligible and injected lines. Document ids are the source's
  (`stdlib/<path>` for the stdlib), so the held-out split is the same files as the plain corpus's.

A registry of one code: the injector is a function of the line; add codes to `INJECTORS`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.data.buckets import id_bucket

log = logging.getLogger(__name__)

PREFIX = "injected:"
INJECTED_VERSION = 1


def _trailing_whitespace(line: str) -> str:
    """W291: a space before the newline."""
    return line[:-1] + " \n"


# code -> (what the injection does, the injector of one eligible line)
INJECTORS: dict[str, tuple[str, Callable[[str], str]]] = {
    "W291": ("trailing whitespace", _trailing_whitespace),
}


@dataclass(frozen=True)
class InjectedSpec:
    """A parsed `injected:<code>:<rate>[:<source>]`."""

    code: str
    rate: float
    source: str  # "stdlib" or an absolute folder path

    @property
    def name(self) -> str:
        """The cache folder's name: code, rate and source."""
        tag = self.source
        if tag != "stdlib":  # the folder's name and a hash of its path
            tag = f"{Path(tag).name[:32]}-{int(id_bucket(tag, 'inject-source:') * 1e8):08d}"
        return f"{self.code}-{self.rate:g}-{tag}-v{INJECTED_VERSION}"

    @property
    def id_prefix(self) -> str:
        """Document ids as the plain source's: the same held-out files."""
        return "stdlib/" if self.source == "stdlib" else ""

    def key(self) -> str:
        """The spec with an absolute source: what names the corpus (its scored folder)."""
        return f"{PREFIX}{self.code}:{self.rate:g}:{self.source}"


def is_injected(spec: str) -> bool:
    """Whether a corpus spec names an injected corpus."""
    return spec.startswith(PREFIX)


def parse_spec(spec: str) -> InjectedSpec:
    """`injected:<code>:<rate>[:<source>]` parsed; a ValueError naming data.corpus otherwise."""
    parts = spec[len(PREFIX) :].split(":", 2)
    usage = f"data.corpus: {spec!r}: expected injected:<code>:<rate>[:<stdlib or a folder>]"
    if len(parts) < 2:
        raise ValueError(usage)
    code, rate_text = parts[0].upper(), parts[1]
    if code not in INJECTORS:
        raise ValueError(
            f"data.corpus: {spec!r}: code {parts[0]!r} is not one of {sorted(INJECTORS)}"
        )
    try:
        rate = float(rate_text)
    except ValueError:
        raise ValueError(usage) from None
    if not 0.0 < rate <= 0.5:
        raise ValueError(
            f"data.corpus: {spec!r}: rate must be in (0, 0.5] (files draw rates up to 2 x rate), got {rate_text}"
        )
    source = parts[2] if len(parts) == 3 and parts[2] else "stdlib"
    if source != "stdlib":
        if not os.path.isdir(source):
            raise FileNotFoundError(f"data.corpus: {spec!r}: source folder not found: {source}")
        source = os.path.abspath(source)
    return InjectedSpec(code, rate, source)


def file_rate(rel: str, rate: float) -> float:
    """The fraction of its eligible lines a file gets injected: uniform on [0, 2 × rate]."""
    return 2.0 * rate * id_bucket(rel, "inject-file:")


def eligible(line: str) -> bool:
    """A line the injection may change: content, a newline, no trailing whitespace, no continuation."""
    if not line.endswith("\n"):
        return False
    body = line[:-1].rstrip("\r")
    return bool(body.strip()) and body == body.rstrip() and not body.endswith("\\")


def inject_text(rel: str, text: str, spec: InjectedSpec) -> tuple[str, int, int]:
    """(the file with the violation injected, eligible lines, injected lines)."""
    inject = INJECTORS[spec.code][1]
    rate = file_rate(rel, spec.rate)
    out, n_eligible, n_injected = [], 0, 0
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        if eligible(line):
            n_eligible += 1
            if id_bucket(f"{rel}:{number}", "inject-line:") < rate:
                line = inject(line)
                n_injected += 1
        out.append(line)
    return "".join(out), n_eligible, n_injected


def ensure_corpus(
    spec: InjectedSpec, cache_dir: str, list_files: Callable[[], list[Path]], root: Path
) -> Path:
    """The injected copy of the files `list_files()` gives (under `root`), built once under
    `cache_dir`; its folder. The source is listed only when the copy is built."""
    folder = Path(cache_dir) / "injected" / spec.name
    if (folder / "manifest.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", dir=folder.parent))
    try:
        totals = {"files": 0, "eligible_lines": 0, "injected_lines": 0, "unreadable_files": 0}
        for path in list_files():
            rel = path.relative_to(root).as_posix()
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                totals["unreadable_files"] += 1  # left out, as the plain corpus skips them
                continue
            new, n_eligible, n_injected = inject_text(rel, text, spec)
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(new, encoding="utf-8")
            totals["files"] += 1
            totals["eligible_lines"] += n_eligible
            totals["injected_lines"] += n_injected
        manifest = {
            "version": INJECTED_VERSION,
            "spec": spec.key(),
            "code": spec.code,
            "what": INJECTORS[spec.code][0],
            "rate": spec.rate,
            **totals,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        try:
            os.rename(tmp, folder)
        except OSError:  # another rank finished first: theirs is the same corpus
            if not (folder / "manifest.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            return folder
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    share = totals["injected_lines"] / max(totals["eligible_lines"], 1)
    log.info(
        "injected %s (%s) into %d of %d eligible lines (%.1f%%) of %d files: %s",
        spec.code,
        INJECTORS[spec.code][0],
        totals["injected_lines"],
        totals["eligible_lines"],
        100 * share,
        totals["files"],
        folder,
    )
    return folder

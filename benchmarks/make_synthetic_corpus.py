"""Benchmark corpus generator: a streamed, realistic corpus of a given size in the scored schema.

    python benchmarks/make_synthetic_corpus.py --out /tmp/corpus400 --size 400MB
    python benchmarks/make_synthetic_corpus.py --out /tmp/c4g --size 4GB --format both --kind mixed
    python benchmarks/make_synthetic_corpus.py --out /tmp/prose --size 1.5GB --kind prose --unscored

Documents are seeded, cheaply mutated copies of the standard library's .py files (`--kind code`,
segments are lines) or of /usr/share/doc copyright/README files (`prose`, segments are sentences,
some with non-Latin-1 text inserted); `mixed` alternates the two. Records are the paper's scored
schema {id, texts, scores, avg_score, num_sents} (--unscored: {id, text}) with synthetic scores
(mostly 0.0, a seeded fraction k/len(segment)). Files: DIR/jsonl/part-00000.jsonl ... and/or
DIR/parquet/part-00000.parquet ..., each about --file_size bytes of text, and DIR/corpus.json.
Memory does not grow with --size: documents are written one at a time (Parquet: a row group at a
time); sources are parsed and JSON-escaped once (cached up to CACHE_CAP), so each copy costs only
list edits and joins. The same arguments give byte-identical files.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import re
import sys
import sysconfig
import time
from collections.abc import Iterator
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9, "GB": 10**9}
WORDS = ["alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma", "zeta", "theta", "lambda"]
NON_LATIN1 = ["ł", "—", "日本", "Ω", "🙂", "Ж", "€", "…", "中文", "ğ"]
LATIN1 = ["é", "ü", "ñ", "ø"]
ROW_GROUP_ROWS = 4096  # a Parquet row group is flushed at this many rows or ROW_GROUP_BYTES
ROW_GROUP_BYTES = 32 * 10**6
MAX_PROSE_BYTES = 256 * 10**3  # prose files above this (multi-MB licences) are left out
CACHE_CAP = 320 * 10**6  # estimated bytes of parsed sources kept per kind; the rest is re-read
DEF_RES = [re.compile(r"def ([A-Za-z_]\w*)"), re.compile(r"class ([A-Za-z_]\w*)")]  # fast
MAX_LEN = 4096  # score k / max(len, 20) is looked up at k * MAX_LEN + min(len, MAX_LEN - 1)
SCORES = np.array([k / max(n, 20) for k in range(3) for n in range(MAX_LEN)], dtype=object)
SCORE_REPRS = np.array([repr(x) for x in SCORES], dtype=object)


class Source(NamedTuple):
    """A parsed source: segments, their JSON-escaped bodies, and lines holding each def name."""

    segs: list[str]
    esc: list[str]
    names: dict[str, list[int]]


Doc = tuple[str, list[str], list[str], list[float], str]  # id, segs, esc, scores, scores JSON


def parse_size(value: str) -> int:
    """Bytes from '400MB', '1.5GB', '10KB' or '1000000' (decimal units)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*", value)
    if not m or m.group(2).upper() not in UNITS or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"bad size {value!r} (e.g. 400MB, 4GB, 1.5GB, 1000000)")
    return max(1, int(float(m.group(1)) * UNITS[m.group(2).upper()]))


def escape(segs: list[str]) -> list[str]:
    """JSON string bodies (no quotes) of segments, from one json.dumps call."""
    # Inside a body every '"' is escaped, so '", "' only occurs between elements.
    return json.dumps(segs)[2:-2].split('", "') if segs else []


def split_sentences(text: str) -> list[str]:
    """Sentences ending after '. ' or a line break; "".join gives the text back."""
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        if ". " in line:
            parts = line.split(". ")
            out.extend(p + ". " for p in parts[:-1])
            if parts[-1]:
                out.append(parts[-1])
        else:
            out.append(line)
    return out


def parse(text: str, kind: str) -> Source:
    """Segments of a source text and, for code, the lines where a few def/class names occur."""
    if kind != "code":
        segs = split_sentences(text)
        return Source(segs, escape(segs), {})
    if not text.endswith(("\n", "\r")):
        text += "\n"
    segs = text.splitlines(keepends=True)
    defs = dict.fromkeys(n for r in DEF_RES for n in r.findall(text))
    found = [n for n in defs if len(n) >= 4 and n[:2] != "__"]
    ends = np.cumsum(list(map(len, segs)))
    names = {}
    for name in found[:: max(1, len(found) // 8)][:8]:
        pos, hits = text.find(name), []
        while pos >= 0:
            hits.append(pos)
            pos = text.find(name, pos + len(name))
        names[name] = sorted(set(np.searchsorted(ends, hits, side="right").tolist()))
    return Source(segs, escape(segs), names)


def source_items(kind: str) -> list[Path] | list[str]:
    """The standard library's .py files, or /usr/share/doc text files (else pydoc topic texts)."""
    if kind == "code":  # without site-packages and __pycache__
        paths = []
        for folder, subdirs, files in os.walk(sysconfig.get_paths()["stdlib"]):
            subdirs[:] = [d for d in subdirs if d not in ("site-packages", "__pycache__")]
            paths += [Path(folder, f) for f in files if f.endswith(".py")]
        return sorted(paths)
    root, globs = Path("/usr/share/doc"), ["*/copyright", "*/README*", "*/*.md", "*/*.txt"]
    found = {p for g in globs for p in root.glob(g) if p.suffix != ".gz" and p.is_file()}
    if found:
        return sorted(found)
    import pydoc_data.topics

    return [v for _, v in sorted(pydoc_data.topics.topics.items())]


def load(item: Path | str, kind: str) -> Source | None:
    """A parsed source, or None when it is empty, too big (prose) or not valid UTF-8 (code)."""
    text = item if isinstance(item, str) else None
    if isinstance(item, Path):
        try:
            raw = item.read_bytes()
            if kind == "code" or len(raw) <= MAX_PROSE_BYTES:
                text = raw.decode("utf-8", "strict" if kind == "code" else "ignore")
        except (OSError, UnicodeDecodeError):
            pass
    return parse(text, kind) if text and text.strip() else None


def mutate(rng: random.Random, src: Source, kind: str, tag: str) -> tuple[list[str], list[str]]:
    """A seeded, mutated copy (segments, escaped bodies) of a source; cheap list edits only."""
    segs, esc = list(src.segs), list(src.esc)

    def put(i: int, seg: str) -> None:
        segs[i], esc[i] = seg, json.dumps(seg)[1:-1]

    def some(k: int) -> list[int]:
        return rng.sample(range(len(segs)), min(len(segs), rng.randint(1, k)))

    for name in rng.sample(sorted(src.names), min(len(src.names), rng.randint(2, 3))):
        new = f"{name}_{rng.choice(WORDS)}"
        for i in src.names[name]:
            put(i, segs[i].replace(name, new))
    n = len(segs)
    if n >= 8:  # drop or duplicate a contiguous chunk
        a, b = rng.randrange(n), rng.randint(1, max(1, n // 20))
        if rng.random() < 0.5:
            del segs[a : a + b], esc[a : a + b]
        else:
            segs[a:a], esc[a:a] = segs[a : a + b], esc[a : a + b]
    if kind == "code":
        if rng.random() < 0.3:  # re-indent a few lines
            for i in some(5):
                put(i, segs[i][1:] if segs[i].startswith(" ") else "    " + segs[i])
        if rng.random() < 0.3:  # add or remove trailing spaces
            for i in some(5):
                body = segs[i].rstrip("\r\n")
                pad = " " * rng.randint(1, 3) if rng.random() < 0.7 else ""
                put(i, body.rstrip() + pad + segs[i][len(body) :])
        line = f"# {tag}: {rng.choice(WORDS)}\n"
    else:
        if len(segs) > 2:  # shuffle a short window of sentences
            a = rng.randrange(len(segs) - 1)
            order = list(range(a, min(len(segs), a + rng.randint(2, 8))))
            rng.shuffle(order)
            segs[a : a + len(order)] = [segs[j] for j in order]
            esc[a : a + len(order)] = [esc[j] for j in order]
        for i in some(4):  # swap two words
            words = segs[i].split(" ")
            if len(words) > 2:
                x, y = rng.randrange(len(words) - 1), rng.randrange(len(words) - 1)
                words[x], words[y] = words[y], words[x]
                put(i, " ".join(words))
        for j, i in enumerate(some(4)):  # insert before the last character: line ends stay
            pos = rng.randrange(len(segs[i]))
            put(i, segs[i][:pos] + rng.choice(NON_LATIN1 + LATIN1 * j) + segs[i][pos:])
        line = f"[{tag}: {rng.choice(WORDS)}]\n"
    i = rng.randrange(len(segs) + 1)
    segs.insert(i, line)
    esc.insert(i, json.dumps(line)[1:-1])
    return segs, esc


def scores_for(rng: random.Random, segs: list[str], low: float, high: float) -> tuple[list, str]:
    """Synthetic per-character scores (a seeded fraction k/len(segment), the rest 0.0) and their
    JSON list body, looked up in precomputed tables: no Python work per zero segment."""
    n = len(segs)
    g = np.random.default_rng(rng.getrandbits(64))
    hits = np.flatnonzero(g.random(n) < rng.uniform(low, high))
    codes = np.zeros(n, dtype=np.int64)
    if len(hits):
        lens = np.array(list(map(len, itemgetter(*hits.tolist(), 0)(segs)[:-1])), dtype=np.int64)
        codes[hits] = g.integers(1, 3, len(hits)) * MAX_LEN + np.minimum(lens, MAX_LEN - 1)
    return SCORES[codes].tolist(), ", ".join(SCORE_REPRS[codes].tolist())


def documents(kind: str, seed: int, scored: bool = True) -> Iterator[Doc]:
    """Endless documents of one kind ('mixed' alternates code and prose)."""
    if kind == "mixed":
        streams = [documents("code", seed, scored), documents("prose", seed, scored)]
        for stream in itertools.cycle(streams):
            yield next(stream)
    items = source_items(kind)
    cache: dict[int, Source | None] = {}  # parsed sources, up to about CACHE_CAP bytes
    cached = 0
    low, high = (0.1, 0.3) if kind == "code" else (0.05, 0.2)  # fraction of scored segments
    for copy in itertools.count():
        produced, order = 0, list(range(len(items)))
        random.Random(f"{seed}:{kind}:{copy}").shuffle(order)  # each pass in its own order
        for i in order:
            if i in cache:
                src = cache[i]
            else:  # about 120 bytes per segment (two str objects, two list slots) plus text
                src = load(items[i], kind)
                cost = 120 * len(src.segs) + 2 * sum(map(len, src.segs)) if src else 0
                if cached + cost <= CACHE_CAP:
                    cache[i], cached = src, cached + cost
            if src is None:
                continue
            rng = random.Random(f"{seed}:{kind}:{copy}:{i}")
            segs, esc = mutate(rng, src, kind, f"synthetic copy {copy} of source {i}")
            scores, scores_json = scores_for(rng, segs, low, high) if scored else ([], "")
            produced += 1
            yield f"{kind}-{copy:08d}-{i:05d}", segs, esc, scores, scores_json
        if not produced:
            raise SystemExit(f"no readable {kind} source files")


class PartWriter:
    """One output part (JSONL or Parquet) written to a temporary name, renamed on close."""

    def __init__(self, path: Path, fmt: str, scored: bool) -> None:
        self.path, self.fmt, self.scored = path, fmt, scored
        self.tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        self.rows = self.buffered = 0
        if fmt == "jsonl":
            self.fh = open(self.tmp, "w", encoding="utf-8", newline="\n", buffering=1 << 20)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        fields = [("id", pa.string())]
        if scored:
            fields += [("texts", pa.list_(pa.string())), ("scores", pa.list_(pa.float64()))]
            fields += [("avg_score", pa.float64()), ("num_sents", pa.int64())]
        else:
            fields += [("text", pa.string())]
        self.schema = pa.schema(fields)
        self.cols: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        self.pq = pq.ParquetWriter(self.tmp, self.schema, compression="snappy")

    def write(self, doc: Doc, text: str, avg: float, nbytes: int) -> None:
        """Append one record (Parquet: buffered until a row group is full)."""
        doc_id, segs, esc, scores, scores_json = doc
        if self.fmt == "jsonl":  # byte for byte what json.dumps(record) gives
            if self.scored:
                texts = '["' + '", "'.join(esc) + '"]' if esc else "[]"
                self.fh.write(
                    f'{{"id": "{doc_id}", "texts": {texts}, "scores": [{scores_json}], '
                    f'"avg_score": {avg!r}, "num_sents": {len(segs)}}}\n'
                )
            else:
                self.fh.write(json.dumps({"id": doc_id, "text": text}) + "\n")
            return
        values = [doc_id, segs, scores, avg, len(segs)] if self.scored else [doc_id, text]
        for col, value in zip(self.cols.values(), values, strict=True):
            col.append(value)
        self.rows, self.buffered = self.rows + 1, self.buffered + nbytes
        if self.rows >= ROW_GROUP_ROWS or self.buffered >= ROW_GROUP_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write the buffered Parquet rows as one row group."""
        import pyarrow as pa

        if self.rows:
            table = pa.Table.from_pydict(self.cols, schema=self.schema)
            self.pq.write_table(table, row_group_size=self.rows)
            self.cols = {name: [] for name in self.cols}
            self.rows = self.buffered = 0

    def close(self, keep: bool = True) -> None:
        """Finish the file and move it into place (keep=False: delete it)."""
        if self.fmt == "jsonl":
            self.fh.close()
        else:
            if keep:
                self.flush()
            self.pq.close()
        os.replace(self.tmp, self.path) if keep else self.tmp.unlink()


def main(argv: list[str] | None = None) -> int:
    """Write the corpus; print a one-line summary."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--size", type=parse_size, required=True, help="text bytes, e.g. 400MB, 4GB")
    ap.add_argument(
        "--format", choices=["jsonl", "parquet", "both"], default="jsonl", help="file format(s)"
    )
    ap.add_argument(
        "--kind",
        choices=["code", "prose", "mixed"],
        default="code",
        help="stdlib .py files, /usr/share/doc prose, or both alternating",
    )
    ap.add_argument("--file_size", type=parse_size, default=128 * 10**6, help="text bytes/file")
    ap.add_argument("--unscored", action="store_true", help="write {id, text} records")
    ap.add_argument("--seed", type=int, default=0, help="same arguments, same bytes")
    args = ap.parse_args(argv)

    fmts = ["jsonl", "parquet"] if args.format == "both" else [args.format]
    for fmt in fmts:
        (args.out / fmt).mkdir(parents=True, exist_ok=True)
    (args.out / "corpus.json").unlink(
        missing_ok=True
    )  # written last: its absence marks a partial run
    start = time.perf_counter()
    files: list[str] = []
    writers: list[PartWriter] = []
    total = in_file = docs = 0
    try:
        for doc in documents(args.kind, args.seed, scored=not args.unscored):
            if not writers:
                paths = [args.out / f / f"part-{len(files) // len(fmts):05d}.{f}" for f in fmts]
                writers = [
                    PartWriter(p, f, not args.unscored) for p, f in zip(paths, fmts, strict=True)
                ]
                files += [str(p.relative_to(args.out)) for p in paths]
            text = "".join(doc[1])
            nbytes = len(text) if text.isascii() else len(text.encode("utf-8"))
            avg = math.fsum(doc[3]) / len(doc[3]) if doc[3] else 0.0
            for w in writers:
                w.write(doc, text, avg, nbytes)
            docs, total, in_file = docs + 1, total + nbytes, in_file + nbytes
            if in_file >= args.file_size or total >= args.size:
                for w in writers:
                    w.close()
                writers, in_file = [], 0
            if total >= args.size:
                break
    except BaseException:  # no half-written temporary files left behind
        for w in writers:
            w.close(keep=False)
        raise
    for fmt in fmts:  # parts left by an earlier, larger run would join this corpus
        for stale in (args.out / fmt).glob(f"part-[0-9][0-9][0-9][0-9][0-9].{fmt}"):
            if str(stale.relative_to(args.out)) not in files:
                stale.unlink()
    secs = time.perf_counter() - start
    meta = {"kind": args.kind, "size_bytes": total, "requested_bytes": args.size}
    meta |= {"documents": docs, "files": files, "seed": args.seed, "scored": not args.unscored}
    meta |= {"format": args.format, "file_size": args.file_size}
    (args.out / "corpus.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(
        f"wrote {len(files)} files, {docs} documents, {total} text bytes in {secs:.1f} s "
        f"({total / 1e6 / max(secs, 1e-9):.1f} MB/s) to {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

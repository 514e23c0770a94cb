"""Load a config of the original PHF code: task file, method file, `--override a.b=c`, with provenance.

Semantics of tomekkorbak/pretraining-with-human-feedback (`train.py`, `apo/utils.py`):

- `merge_configs(task, method)` merges *recursively*: where both files hold a mapping under the
  same key the mappings are merged key by key; anything else (a scalar, a list such as
  `generation.scenario_configs`) is replaced wholesale by the method file's value.
- `override_config` then sets each `a.b.c=value` in the merged config. Values: `True`, `False`,
  `None` and plain numbers are Python literals, anything else stays a string. Here numbers in
  scientific notation (`1e-3`), lowercase `true`/`false`/`null` and JSON lists/objects are also
  parsed (the original passed e.g. `learning_rate=1e-3` on as the *string* "1e-3"); missing
  intermediate mappings are created (the original raised KeyError).

`OriginalConfig` flattens the merged config into dotted leaf paths (`training.learning_rate`,
`generation.scenario_configs[0].generate_kwargs.top_p`) and remembers which file or override each
came from, so that every error can name the key and where it was written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.config import ConfigError

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_KINDS = {"number": "a number", "integer": "an integer", "bool": "true or false", "str": "a string"}


def merge_configs(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """The original `merge_configs`: `over` wins; mappings present in both are merged recursively."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = merge_configs(out[key], value)
        else:
            out[key] = value
    return out


def parse_override_value(text: str) -> Any:
    """An override's value: booleans, None, numbers and JSON lists/objects; otherwise the string."""
    if text in ("True", "true"):
        return True
    if text in ("False", "false"):
        return False
    if text in ("None", "null", "~"):
        return None
    if _INTEGER.fullmatch(text):
        return int(text)
    if _NUMBER.fullmatch(text):
        return float(text)
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> list[str]:
    """Set each `a.b.c=value` in `config` (in place); return the dotted keys that were set."""
    keys = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--override {item!r}: expected key=value, e.g. training.seed=1")
        path = key.split(".")
        node = config
        for depth, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(path[: depth + 1])
                raise ConfigError(
                    f"--override {item!r}: {where} is not a section (it holds {child!r})"
                )
            node = child
        node[path[-1]] = parse_override_value(raw)
        keys.append(key)
    return keys


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted leaf paths of a config: mappings and lists of mappings are walked, other values are leaves."""
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(node, list) and node and all(isinstance(v, dict) for v in node):
        out = {}
        for i, value in enumerate(node):
            out.update(flatten(value, f"{prefix}[{i}]"))
        return out
    return {prefix: node}


def _load_yaml(path: str, flag: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{flag}: file not found: {path}")
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{flag} {path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{flag} {path}: expected a mapping of sections, got {type(data).__name__}"
        )
    return data


@dataclass
class OriginalConfig:
    """The merged original config as dotted leaves; `take` consumes keys, `leftover` lists the rest."""

    merged: dict[str, Any]
    leaves: dict[str, Any]
    task_leaves: dict[str, Any]
    method_leaves: dict[str, Any]
    override_keys: list[str]
    task_file: str = ""
    method_file: str = ""
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, task: str, method: str, overrides: list[str] | None = None) -> OriginalConfig:
        """Read, merge (method over task, recursively) and override, as the original `train.py`."""
        task_cfg, method_cfg = _load_yaml(task, "--task"), _load_yaml(method, "--method")
        merged = merge_configs(task_cfg, method_cfg)
        keys = apply_overrides(merged, list(overrides or []))
        return cls(
            merged=merged,
            leaves=flatten(merged),
            task_leaves=flatten(task_cfg),
            method_leaves=flatten(method_cfg),
            override_keys=keys,
            task_file=task,
            method_file=method,
        )

    def source(self, path: str) -> str:
        """Where a key was written: `--override ...`, the method file or the task file."""
        for key in reversed(self.override_keys):
            if path == key or path.startswith((key + ".", key + "[")):
                return f"--override {key}"
        under = (path + ".", path + "[")
        if path in self.method_leaves or any(k.startswith(under) for k in self.method_leaves):
            return self.method_file
        return self.task_file

    def has(self, path: str) -> bool:
        """Whether the merged config sets `path` (a leaf, or a section with leaves under it)."""
        return path in self.leaves or any(
            k.startswith((path + ".", path + "[")) for k in self.leaves
        )

    def take(self, path: str, default: Any = None) -> Any:
        """Consume a leaf and return its value (`default` when absent)."""
        return self.leaves.pop(path, default)

    def value(self, path: str, kind: str, default: Any = None, required: bool = False) -> Any:
        """Consume `path`, checking its type (`number`, `integer`, `bool`, `str`); absent or null -> `default`."""
        value = self.take(path)
        if value is None:
            if required:
                self.errors.append(
                    f"{path}: required (the original code needs it), but it is not set"
                )
            return default
        if kind in ("number", "integer") and isinstance(value, str) and _NUMBER.fullmatch(value):
            value = float(value)  # YAML reads `1e-3` as a string (the original passed it on as one)
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = {
            "number": numeric,
            "integer": numeric and float(value).is_integer(),
            "bool": isinstance(value, bool),
            "str": isinstance(value, str),
        }[kind]
        if not ok:
            self.error(path, f"expected {_KINDS[kind]}, got {value!r}")
            return default
        return int(value) if kind == "integer" else float(value) if kind == "number" else value

    def take_section(self, path: str) -> dict[str, Any]:
        """Consume every leaf under `path`; return them keyed by the rest of their path."""
        out = {}
        for key in [k for k in self.leaves if k.startswith((path + ".", path + "["))]:
            out[key[len(path) :].lstrip(".")] = self.leaves.pop(key)
        self.leaves.pop(path, None)  # an empty or null section is a leaf of its own
        return out

    def take_mapping(self, path: str) -> Any:
        """Consume everything under `path` and return it as written (a mapping, or None when absent)."""
        self.take_section(path)
        node: Any = self.merged
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def error(self, path: str, message: str) -> None:
        """Record a problem with `path`, naming where it was written."""
        self.errors.append(f"{path} ({self.source(path)}): {message}")

    def note(self, path: str, message: str) -> None:
        """Record an accepted-but-ignored key or a semantic adjustment (printed to the user)."""
        self.notes.append(f"{path} ({self.source(path)}): {message}")

    def leftover(self) -> list[str]:
        """Keys nobody consumed: unknown to the translator."""
        return list(self.leaves)

"""Objectives: per-method token coefficients and data treatments, selectable by name or class path."""

from __future__ import annotations

import importlib

from harness.config import ObjectiveConfig
from harness.objectives.base import MLE, TokenObjective

REGISTRY: dict[str, type[TokenObjective]] = {"mle": MLE}


def build_objective(ocfg: ObjectiveConfig, seed: int = 0) -> TokenObjective:
    """Instantiate the objective named by `objective.name` (a registry name or `pkg.module.Class`)."""
    if ocfg.name in REGISTRY:
        return REGISTRY[ocfg.name](ocfg, seed)
    if "." in ocfg.name:
        module_name, _, cls_name = ocfg.name.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), cls_name)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"objective.name: cannot import {ocfg.name!r}: {err}") from None
        return cls(ocfg, seed, **ocfg.options)
    raise ValueError(
        f"objective.name: {ocfg.name!r} is not available; choose one of {', '.join(sorted(REGISTRY))}"
    )

"""Objectives: per-method token coefficients and data treatments, selectable by name or class path.

    objective: {name: awr, alpha: 0.5, beta: 10}              # a built-in, by name
    objective: {name: mypkg.objectives.MyObjective, options: {k: v}}   # yours: cls(cfg, seed, **options)

A user objective subclasses `TokenObjective` and overrides `coefficients` (and, as needed, `treat`,
`treatment_key`, `prepare_model`, `build_value_head`, `extra_loss`).
"""

from __future__ import annotations

import importlib

from harness.config import ObjectiveConfig
from harness.objectives.awr import AWR, RWR, ValueHead
from harness.objectives.base import MLE, TokenObjective
from harness.objectives.conditional import ConditionalTraining
from harness.objectives.filtering import Filtering
from harness.objectives.unlikelihood import Unlikelihood

REGISTRY: dict[str, type[TokenObjective]] = {
    "mle": MLE,
    "filtering": Filtering,
    "conditional": ConditionalTraining,
    "ul": Unlikelihood,
    "awr": AWR,
    "rwr": RWR,
}

__all__ = [
    "AWR",
    "MLE",
    "REGISTRY",
    "RWR",
    "ConditionalTraining",
    "Filtering",
    "TokenObjective",
    "Unlikelihood",
    "ValueHead",
    "build_objective",
]


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
        f"objective.name: {ocfg.name!r} is not available; choose one of {', '.join(REGISTRY)} "
        "or a class path pkg.module.Class"
    )

"""Objectives: per-method token coefficients and data treatments, selectable by name or class path.

`REGISTRY` is the one list of built-in objectives: config validation, the report, the model card
and `scripts/run_experiment.sh` read it.

    objective: {name: awr, alpha: 0.5, beta: 10}              # a built-in, by name
    objective: {name: mypkg.objectives.MyObjective, options: {k: v}}   # yours: cls(cfg, seed, **options)

A user objective subclasses `TokenObjective` and overrides `coefficients` (and, as needed, `treat`,
`treatment_key`, `prepare_model`, `build_value_head`, `extra_loss`).
"""

from __future__ import annotations

from harness.config import ObjectiveConfig
from harness.objectives.awr import AWR, RWR, ValueHead
from harness.objectives.base import MLE, TokenObjective
from harness.objectives.conditional import ConditionalTraining
from harness.objectives.filtering import Filtering
from harness.objectives.unlikelihood import Unlikelihood
from harness.plugins import plugin_class

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
    "objective_class",
]


def objective_class(name: str) -> type[TokenObjective]:
    """The class `objective.name` names: a registry name or `pkg.module.Class`; ValueError otherwise."""
    return plugin_class(name, REGISTRY, TokenObjective, "objective.name")


def build_objective(ocfg: ObjectiveConfig, seed: int = 0) -> TokenObjective:
    """Instantiate the objective named by `objective.name` (a registry name or `pkg.module.Class`)."""
    cls = objective_class(ocfg.name)
    if ocfg.name in REGISTRY:
        return cls(ocfg, seed)
    return cls(ocfg, seed, **ocfg.options)

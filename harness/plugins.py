"""Plug-ins by name: a registry name or a class path `pkg.module.Class` (objectives, tasks)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def plugin_class(name: str, registry: Mapping[str, type[T]], base: type[T], key: str) -> type[T]:
    """The class `name` names: a registry entry, else a class path to a subclass of `base`.

    A ValueError names the config `key`, the registry's names and what went wrong.
    """
    if name in registry:
        return registry[name]
    module_name, _, cls_name = name.rpartition(".")
    if not module_name:
        raise ValueError(
            f"{key}: unknown name {name!r}; choose one of {', '.join(registry)} "
            "or a class path pkg.module.Class"
        )
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{key}: cannot import {name!r}: {err}") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"{key}: {name!r} is not a {base.__module__}.{base.__name__} subclass")
    return cls

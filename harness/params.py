"""A workload's parameters: its preset overlaid with the keys a user set, and checked.

Torch-free, so that the orchestrator checks a config before any process starts or any run dir
exists (harness/orchestrator/preflight.py), and the worker resolves the same parameters with
the same code when it builds the workload. Each workload declares its presets and its
`validate` once, beside its schema in `workloads/<name>/__init__.py`, and registers them with
`@plugins.workload(..., presets=..., default_preset=..., validate=...)`.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

from harness.errors import ConfigError

# What the float workloads compute in (torch dtype names; thresholds are keyed by them).
FLOAT_DTYPES = ("bfloat16", "float16", "float32")


def resolve(cfg: Mapping[str, Any], presets: Mapping[str, Mapping[str, Any]] | None, device: str,
            defaults: Mapping[str, str] | None,
            validate: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    """The validated parameters of a config, without building anything: the preset's values
    overlaid with the explicitly set (non-None) config keys. `defaults` maps a device type to
    the preset `auto` means there. A workload without presets takes its config as it is."""
    if presets is None:
        params = dict(cfg)
    else:
        preset = cfg.get("preset", "auto")
        if preset == "auto":
            preset = (defaults or {}).get(device, (defaults or {}).get("cpu"))
        if preset not in presets:
            raise ConfigError("workload.preset", f"unknown preset {preset!r}; expected one of: "
                              f"auto, {', '.join(presets)}")
        params = dict(presets[preset])
        params.update({k: v for k, v in cfg.items()
                       if k != "preset" and (v is not None or k not in params)})
        params["preset"] = preset
    require_finite_or_none(params, "min_sqnr_db")
    if validate is not None:
        validate(params)
    return params


def require_positive(params: Mapping[str, Any], *keys: str) -> None:
    for key in keys:
        value = params.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"workload.{key}", f"expected a positive integer, got {value!r}")


def require_choice(params: Mapping[str, Any], key: str, choices: Sequence[str]) -> None:
    if params.get(key) not in choices:
        raise ConfigError(f"workload.{key}", f"expected one of {', '.join(choices)}, got {params.get(key)!r}")


def require_bool(params: Mapping[str, Any], *keys: str) -> None:
    for key in keys:
        if not isinstance(params.get(key), bool):
            raise ConfigError(f"workload.{key}", f"expected true or false, got {params.get(key)!r}")


def require_float_dtype(params: Mapping[str, Any], key: str = "dtype") -> None:
    name = params.get(key)
    if name not in FLOAT_DTYPES:
        raise ConfigError(f"workload.{key}", f"expected {', '.join(FLOAT_DTYPES[:-1])} or "
                          f"{FLOAT_DTYPES[-1]}, got {name}")


def require_finite_or_none(params: Mapping[str, Any], key: str) -> None:
    """A threshold such as min_sqnr_db: null (the workload's default) or a finite number; a
    NaN would make every comparison with it false."""
    value = params.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value)):
        raise ConfigError(f"workload.{key}", f"expected null (the workload's default) or a "
                          f"finite number, got {value!r}")

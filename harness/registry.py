"""Name -> module registries. Adding a workload: one module, one YAML, one test, one line here."""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

WORKLOADS: dict[str, str] = {
    "fp8_linear": "workloads.fp8_linear",
    "conv": "workloads.conv",
    "qwen_decoder": "workloads.qwen_decoder",
    "faulty": "workloads.faulty",
}

BACKENDS: dict[str, str] = {
    "eager": "backends.eager",
    "inductor": "backends.inductor",
    "xla": "backends.xla",
    "torch_xla": "backends.torch_xla",
}

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def _load(registry: dict[str, str], kind: str, name: str) -> ModuleType:
    if name not in registry:
        raise KeyError(f"unknown {kind} {name!r}; available: {', '.join(sorted(registry))}")
    return importlib.import_module(registry[name])


def workload_module(name: str) -> ModuleType:
    return _load(WORKLOADS, "workload", name)


def backend_module(name: str) -> ModuleType:
    return _load(BACKENDS, "backend", name)


def config_options(group: str) -> list[str]:
    """The options of a config group, as Hydra sees them (the YAML files of conf/<group>/)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))

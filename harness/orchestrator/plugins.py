"""Workloads and backends declare themselves once: a decorator on their config schema.

    @workload("fp8_linear", build="workloads.fp8_linear.model:build", presets=PRESETS,
              default_preset={"cuda": "seed", "cpu": "cpu_small"}, validate=validate)
    @dataclass
    class Fp8LinearConfig(WorkloadConfig): ...

    @plugins.backend("inductor", module="backends.inductor.backend", label=inductor_label,
             compile_cache={"TORCHINDUCTOR_CACHE_DIR": "inductor", "TRITON_CACHE_DIR": "triton"},
             variants={"inductor_max_autotune": {"mode": "max-autotune"}})
    @dataclass
    class InductorConfig(BackendConfig): ...

Discovery imports every subpackage of `workloads/` and `backends/` (their `__init__.py` holds
the schema and nothing heavier: the orchestrator must start without importing torch), then
the modules named by entry points of the group `harness.orchestrator.plugins`, so a package outside this
repository can add a workload or a backend without editing a line here. Each schema, and
each backend variant, is stored in Hydra's ConfigStore under its group: `workload=conv` and
`backend=inductor_max_autotune` are Hydra options, and a key of another backend
(`backend=xla backend.mode=max-autotune`) is rejected by Hydra itself.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from harness.errors import ConfigError

ENTRY_POINT_GROUP = "harness.orchestrator.plugins"
BUILTIN_PACKAGES = ("workloads", "backends")


@dataclass(frozen=True)
class WorkloadSpec:
    name: str
    schema: type            # a dataclass extending harness.orchestrator.config.WorkloadConfig
    build: str              # "module:function", build(cfg: dict, device) -> harness.worker.workload.Workload
    # Declared beside the schema, torch-free: the orchestrator checks a config with them before
    # any process starts, the worker's build resolves its parameters with the same ones.
    presets: Mapping[str, Mapping[str, Any]] | None = None      # preset name -> parameters
    default_preset: Mapping[str, str] | None = None             # device type -> preset of `auto`
    validate: Callable[[dict[str, Any]], None] | None = None    # raises ConfigError naming the key

    def resolve(self, cfg: Mapping[str, Any], device: str) -> dict[str, Any]:
        """The workload's parameters on a device type (`cuda`, `cpu`), checked."""
        from harness.params import resolve
        return resolve(cfg, self.presets, device, self.default_preset, self.validate)


GRAPH_MECHANISMS = ("none", "cudagraphs", "command_buffers")
FAIR_PAIRS = ("headline", "control")


@dataclass(frozen=True)
class Traits:
    """What a configuration of a backend is, declared by the backend (never parsed from its
    label): its compiler family, how it launches kernels as graphs, and which fair pair it is a
    side of (docs/DESIGN.md, "What is fair": the side is its family)."""
    family: str                     # eager | inductor | xla | torch_xla | a plugin's own
    graphs: str = "none"            # none | cudagraphs (Inductor's graph modes) | command_buffers (XLA)
    pair: str | None = None         # headline | control | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class BackendSpec:
    name: str
    schema: type            # a dataclass extending harness.orchestrator.config.BackendConfig
    module: str             # defines unavailable() -> str | None and prepare(workload, cfg, ctx)
    label: Callable[[Mapping[str, Any]], str]          # resolved backend config -> table label
    compile_cache: Mapping[str, str] = field(default_factory=dict)  # env var -> subdir of the cache
    env: Mapping[str, str] = field(default_factory=dict)             # set for the worker if unset
    packages: tuple[str, ...] = ()                      # versions recorded with every run
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # option -> overrides
    family: str = ""                                    # "" : the backend's name
    graphs: Callable[[Mapping[str, Any]], str] = lambda cfg: "none"          # config -> GRAPH_MECHANISMS
    pair: Callable[[Mapping[str, Any]], str | None] = lambda cfg: None       # config -> FAIR_PAIRS or None
    # What the fork server imports before it forks this backend's workers (bench.isolation=forkserver):
    # modules that cost seconds to import and initialise no device (no CUDA context, no JAX
    # backend). Backends with the same set share a server; a different set gets its own.
    preload: tuple[str, ...] = ()

    def traits(self, cfg: Mapping[str, Any]) -> Traits:
        """The traits of a configuration: the schema's defaults under the given keys (a record
        written before a key existed reads as that key's default)."""
        full = {f.name: f.default for f in dataclasses.fields(self.schema)
                if f.default is not dataclasses.MISSING}
        full.update({k: v for k, v in cfg.items() if v is not None or k not in full})
        graphs = self.graphs(full)
        if graphs not in GRAPH_MECHANISMS:
            raise TypeError(f"backend {self.name}: graphs() gave {graphs!r}, expected one of {GRAPH_MECHANISMS}")
        pair = self.pair(full)
        if pair is not None and pair not in FAIR_PAIRS:
            raise TypeError(f"backend {self.name}: pair() gave {pair!r}, expected one of {FAIR_PAIRS} or None")
        return Traits(self.family or self.name, graphs, pair)


_WORKLOADS: dict[str, WorkloadSpec] = {}
_BACKENDS: dict[str, BackendSpec] = {}
_discovered = False


def _require_dataclass(schema: type, name: str) -> None:
    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"{name}: the schema {schema.__name__} must be a @dataclass "
                        "(put @dataclass below the registering decorator)")


def workload(name: str, *, build: str, presets: Mapping[str, Mapping[str, Any]] | None = None,
             default_preset: Mapping[str, str] | None = None,
             validate: Callable[[dict[str, Any]], None] | None = None) -> Callable[[type], type]:
    """Register a workload: its config schema (this class), where its build function is, and
    (torch-free) its presets, the preset `auto` means per device type, and its `validate`."""
    def register(schema: type) -> type:
        _require_dataclass(schema, name)
        _WORKLOADS[name] = WorkloadSpec(name, schema, build, presets, default_preset, validate)
        return schema
    return register


def backend(name: str, *, module: str, label: Callable[[Mapping[str, Any]], str] | None = None,
            compile_cache: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None,
            packages: tuple[str, ...] = (), variants: Mapping[str, Mapping[str, Any]] | None = None,
            family: str = "", graphs: Callable[[Mapping[str, Any]], str] | None = None,
            pair: Callable[[Mapping[str, Any]], str | None] | None = None,
            preload: tuple[str, ...] = ()) -> Callable[[type], type]:
    """Register a backend: its config schema (this class), its module, how tables name a
    configuration of it, the compile caches it writes, its named variants, what a configuration
    of it is (`family`, `graphs`, `pair`: the reports read these, never the label) and what its
    fork server imports before forking."""
    def register(schema: type) -> type:
        _require_dataclass(schema, name)
        known = {f.name for f in dataclasses.fields(schema)}
        for option, overrides in (variants or {}).items():
            unknown = set(overrides) - known
            if unknown:
                raise TypeError(f"backend variant {option}: {', '.join(sorted(unknown))} "
                                f"not in {schema.__name__}")
        _BACKENDS[name] = BackendSpec(name, schema, module, label or (lambda cfg: name),
                                      dict(compile_cache or {}), dict(env or {}), tuple(packages),
                                      dict(variants or {}), family or name,
                                      graphs or (lambda cfg: "none"), pair or (lambda cfg: None),
                                      tuple(preload))
        return schema
    return register


def discover() -> None:
    """Import every built-in workload and backend package and every `harness.orchestrator.plugins` entry
    point, once. Their decorators fill the registries."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for package_name in BUILTIN_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            if info.ispkg and not info.name.startswith("_"):
                _import(f"{package_name}.{info.name}")
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        _import(entry.value)


def _import(module: str) -> None:
    try:
        importlib.import_module(module)
    except Exception as e:  # a broken plugin names itself, it does not stop the others silently
        raise ConfigError("plugins", f"cannot import {module}: {type(e).__name__}: {e}") from None


def workloads() -> dict[str, WorkloadSpec]:
    discover()
    return dict(_WORKLOADS)


def backends() -> dict[str, BackendSpec]:
    discover()
    return dict(_BACKENDS)


def workload_spec(name: str) -> WorkloadSpec:
    found = workloads()
    if name not in found:
        raise ConfigError("workload", f"unknown workload {name!r}; available: {', '.join(sorted(found))}")
    return found[name]


def backend_spec(name: str) -> BackendSpec:
    found = backends()
    if name not in found:
        raise ConfigError("backend", f"unknown backend {name!r}; available: {', '.join(sorted(found))}")
    return found[name]


def load(target: str) -> Any:
    """`package.module:attribute` -> the attribute (imports the module)."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute) if attribute else importlib.import_module(module)


def config_nodes() -> dict[str, dict[str, Any]]:
    """group -> option -> the dataclass instance Hydra stores for it."""
    nodes: dict[str, dict[str, Any]] = {"workload": {}, "backend": {}}
    for spec in workloads().values():
        nodes["workload"][spec.name] = spec.schema(name=spec.name)
    for spec in backends().values():
        nodes["backend"][spec.name] = spec.schema(name=spec.name)
        for option, overrides in spec.variants.items():
            nodes["backend"][option] = spec.schema(name=spec.name, **overrides)
    return nodes

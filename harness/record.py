"""RunRecord: one JSON per run, written atomically, never overwritten.

Schema 2 (this harness): `backend_label`, timing over fresh processes (`timing.processes`,
`timing.between`), GPU time and host gap (`gpu`), typed `artifacts` and `flags`. Schema 1
records (the H100 reference) are still read by the reports.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2
KNOWN_SCHEMA_VERSIONS = (1, 2)
RECORD_NAME = "record.json"


@dataclass
class RunRecord:
    run_id: str
    status: str                 # ok | failed | skipped
    reason: str = ""
    config_error: dict[str, str] | None = None   # {key, message}: a parameter was wrong (the CLI exits 2)
    config: dict[str, Any] = field(default_factory=dict)
    workload: str = ""
    backend: str = ""           # the backend package: eager | inductor | xla | torch_xla
    backend_label: str = ""     # what tables call this configuration: inductor:max-autotune, xla:no-cmdbuf
    # what the configuration is, as its backend declares (plugins.Traits): family, graphs, pair
    backend_traits: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)   # the workload's resolved parameters
    shape: str = ""             # what was measured, in words: "M=64 K=128 N=256 (bfloat16 x[64,128] @ ...)"
    environment: dict[str, Any] = field(default_factory=dict)
    compile_s: float | None = None        # first call of the first process (compile + one execution)
    compile: dict[str, Any] = field(default_factory=dict)  # phases, graph evidence, settings
    timing: dict[str, Any] | None = None  # over all processes; per process in timing["processes"]
    gpu: dict[str, Any] | None = None     # GPU time per iteration and the host gap (profiled runs)
    throughput: dict[str, Any] = field(default_factory=dict)
    generation: dict[str, Any] | None = None  # phase=generate: TTFT, TPOT, ITL, per position (combine.generation)
    numerics: dict[str, Any] | None = None
    memory: dict[str, Any] = field(default_factory=dict)   # runtime peaks, the memory table by kind
    kernels: dict[str, Any] = field(default_factory=dict)  # kernel-table summary of the profile pass
    artifacts: list[dict[str, str]] = field(default_factory=list)  # {kind, path (relative), format}
    flags: list[dict[str, str]] = field(default_factory=list)      # {code, detail}: see describe.FLAG_CODES
    stderr_tail: str = ""
    started_at: float | None = None         # epoch seconds, first worker start
    finished_at: float | None = None
    wall_s: float | None = None             # all worker processes, start to exit
    work_s: float | None = None             # compile + numerics + timing + profiling inside them
    profile_iters: int | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_json_atomic(path: Path, payload: dict[str, Any], overwrite: bool = False) -> None:
    """Temp file in the same directory + rename: a reader sees the old file or the whole new one."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite a result")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file 0600; a record is read by colleagues on a shared filesystem
        # like every other file of the run: the mode open() would give it (0666 & ~umask).
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, default=str)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)   # fails if path appeared meanwhile: no silent overwrite
            os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)    # reading it means setting it: set it straight back
    os.umask(mask)
    return mask


def write_record(run_dir: Path, record: RunRecord) -> Path:
    path = Path(run_dir) / RECORD_NAME
    write_json_atomic(path, record.to_dict())
    return path


def read_record(path: Path) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def keep_aside(path: Path, status: str) -> Path:
    """`record.json` renamed to `record.<time>.<status>.json` (a free name: never over another)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        target = path.with_name(f"record.{stamp}{f'.{n}' if n else ''}.{status}.json")
        try:
            os.link(path, target)       # fails where the name is taken, unlike rename
        except FileExistsError:
            continue
        path.unlink()
        return target
    raise FileExistsError(f"{path}: no free name to keep it aside")

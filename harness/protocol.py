"""What crosses the process boundary: a `WorkerTask` to a worker, a `WorkerResult` back, and the
typed `Artifact`s a result lists. Each is a dataclass sent as JSON (the task on stdin or over the
fork server's socket, the result through a pipe); both sides read fields, never parse text.

Torch-free, and the one module that the orchestrator (harness/orchestrator) and the worker
(harness/worker) both import for the boundary.
"""
from __future__ import annotations

import json
import os
import socket
import struct
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# A worker's outcome. `config_error` (a parameter the workload or backend refused: the run's
# config is wrong, exit 2) and `cpu_fallback` (a GPU node whose torch saw no GPU) are failures
# of their own kind, so that the orchestrator can say so without reading any message.
OK, FAILED, SKIPPED, CONFIG_ERROR, CPU_FALLBACK = "ok", "failed", "skipped", "config_error", "cpu_fallback"
STATUSES = (OK, FAILED, SKIPPED, CONFIG_ERROR, CPU_FALLBACK)

# What a file is, not what it is called: the collectors dispatch on these.
INDUCTOR_OUTPUT_CODE = "inductor_output_code"   # a compiled graph's Python wrapper (static memory plan)
XLA_OPTIMIZED_HLO = "xla_optimized_hlo"          # *after_optimizations.txt (kernels -> HLO ops)
XLA_BUFFER_ASSIGNMENT = "xla_buffer_assignment"  # *-buffer-assignment.txt (+ its sibling files)
XLA_DUMP_FILE = "xla_dump_file"                  # the other kept dump files (values, live ranges, report)
TRACE = "trace"                                  # format: "kineto" | "perfetto"
KERNEL_TABLE = "kernel_table"                    # written by the worker
MEMORY_TABLE = "memory_table"
MEMORY_BUFFERS = "memory_buffers"


@dataclass(frozen=True)
class Artifact:
    kind: str
    path: str               # relative to the run dir
    format: str = ""        # traces: kineto | perfetto

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "path": self.path, "format": self.format}

    @classmethod
    def from_dict(cls, d: dict[str, str]) -> "Artifact":
        return cls(d["kind"], d["path"], d.get("format", ""))


@dataclass
class WorkerTask:
    config: dict[str, Any]          # the resolved run config
    run_dir: str
    compile_cache_dir: str          # the backend's declared cache dirs live under it
    process_index: int = 0          # 0: the process that also checks, profiles and collects
    processes: int = 1
    prime_only: bool = False        # fill the compile cache (first call) and stop
    gpus_listed: int = 0            # GPUs nvidia-smi lists on this node (0: none, or no nvidia-smi)
    gpu_slot: str | None = None     # the GPU the orchestrator gave this run
    deadline_s: float = 0.0         # the worker kills itself this long after starting (0: never)

    @property
    def first(self) -> bool:
        return self.process_index == 0 and not self.prime_only

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WorkerTask":
        return cls(**d)


@dataclass
class WorkerResult:
    status: str = OK                    # one of STATUSES
    reason: str = ""                    # why not ok (config_error: the message, without the key)
    config_key: str = ""                # config_error: the key that was wrong, e.g. `workload.M`
    # The measured sections, each as the record holds it (None: not measured).
    params: dict[str, Any] | None = None
    shape: str | None = None                       # the workload's shape in words (Workload.shape)
    environment: dict[str, Any] | None = None
    compile: dict[str, Any] = field(default_factory=dict)
    first_call_s: float | None = None
    numerics: dict[str, Any] | None = None
    timing: dict[str, Any] | None = None           # this process's samples (harness/worker/timing.py)
    generation: dict[str, Any] | None = None       # a generation's latencies per token
    memory: dict[str, Any] | None = None
    kernels: dict[str, Any] | None = None
    artifacts: list[Artifact] = field(default_factory=list)
    profile_iters: int | None = None
    trace_note: str = ""
    throughput_basis: dict[str, Any] | None = None
    flags: list[dict[str, str]] = field(default_factory=list)
    work_s: float | None = None         # compile + numerics + timing + profiling: the rest is overhead

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"WorkerResult.status: expected one of {', '.join(STATUSES)}, got {self.status!r}")

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_json(self) -> str:
        # default=str: a stray numpy scalar or Path in a section is written, not fatal
        return json.dumps(asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str | bytes) -> "WorkerResult":
        d = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"WorkerResult: unknown field(s) {', '.join(sorted(unknown))}")
        d["artifacts"] = [Artifact.from_dict(a) for a in d.get("artifacts") or []]
        return cls(**d)


# -- the fork server's control socket (harness/orchestrator/forkserver.py <-> harness/worker/server.py)

HEADER = struct.Struct("<Q")
MAX_FDS = 8


def send_message(sock: socket.socket, message: dict[str, Any], fds: list[int] = ()) -> None:
    """One length-prefixed JSON message; the fds (SCM_RIGHTS) travel with its header."""
    payload = json.dumps(message).encode()
    header = HEADER.pack(len(payload))
    if fds:
        socket.send_fds(sock, [header], list(fds))
    else:
        sock.sendall(header)
    sock.sendall(payload)


def _recv_exactly(sock: socket.socket, size: int, data: bytes = b"") -> bytes | None:
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def receive_message(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """(message, the fds that came with it); (None, []) at end of file."""
    head, fds, _, _ = socket.recv_fds(sock, HEADER.size, MAX_FDS)
    head = _recv_exactly(sock, HEADER.size, head) if head else None
    payload = _recv_exactly(sock, HEADER.unpack(head)[0]) if head else None
    if payload is None:
        for fd in fds:
            os.close(fd)
        return None, []
    return json.loads(payload), list(fds)

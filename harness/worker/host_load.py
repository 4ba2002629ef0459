"""How busy the host was while a run was timed: the load average, and the CPU time that other
work took on the run's cores (Linux /proc).

A window is two snapshots, one before and one after the timed samples. Between them:
- the run's cores' busy time, from the per-CPU lines of /proc/stat: user, nice, system, irq,
  softirq and steal. Steal is time a hypervisor gave another guest while this one wanted the
  core (a cloud VM's noisy neighbour); guest time is already inside user.
- the worker's own CPU time: every process of the worker's process group (the orchestrator
  starts each worker in a session of its own) and any descendant that left the group, from
  /proc/<pid>/stat: utime + stime of all its threads (torch's intra-op pool, JAX/XLA's
  thread pools, Triton's and the watchdog thread), plus cutime + cstime, the children it
  reaped. Inductor's compile sidecar and its pool stay in the group, so they count as own.
  A process that exits inside the window is counted through its parent's cutime once reaped.
- other = busy - own: every other process on those cores (another job, a busy loop, the
  orchestrator streaming the worker's progress lines), interrupts taken on them and steal.

The counters are in clock ticks (USER_HZ: 10 ms) and each is read truncated, so a window of a
fraction of a second has a coarse share: describe.assess asks for a few ticks of other time
besides the share.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
# /proc/stat per-CPU fields: user nice system idle iowait irq softirq steal guest guest_nice
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)
STEAL_FIELD = 7
SOURCE = "/proc/stat busy (user+nice+system+irq+softirq+steal) on the run's cores minus the worker's process group (/proc/<pid>/stat)"


@dataclass(frozen=True)
class Snapshot:
    monotonic_s: float
    loadavg_1m: float
    cores: tuple[int, ...]
    busy_ticks: int            # over the cores
    steal_ticks: int
    own_ticks: int             # the worker's process group and descendants, children reaped included


def cpu_ticks(cores: tuple[int, ...], stat_text: str) -> tuple[int, int]:
    """(busy, steal) ticks summed over `cores`, from /proc/stat's `cpuN ...` lines."""
    busy = steal = 0
    wanted = {f"cpu{c}" for c in cores}
    for line in stat_text.splitlines():
        name, _, rest = line.partition(" ")
        if name in wanted:
            fields = [int(x) for x in rest.split()]
            busy += sum(fields[i] for i in BUSY_FIELDS if i < len(fields))
            steal += fields[STEAL_FIELD] if len(fields) > STEAL_FIELD else 0
    return busy, steal


def core_busy_share(core: int, seconds: float = 1.0) -> float:
    """How much of one core is busy now, over `seconds` (the caller sleeps meanwhile): what a
    test or a benchmark checks before it runs something alone on that core."""
    with open("/proc/stat") as f:
        before, start = cpu_ticks((core,), f.read())[0], time.monotonic()
    time.sleep(seconds)
    with open("/proc/stat") as f:
        after = cpu_ticks((core,), f.read())[0]
    return (after - before) * TICK_S / (time.monotonic() - start)


def _proc_stat(pid: str) -> tuple[int, int, int] | None:
    """(ppid, pgrp, utime + stime + cutime + cstime) of a process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # `pid (comm) state ppid pgrp ...`: comm may hold spaces and parentheses
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[1]), int(fields[2]), sum(int(x) for x in fields[11:15])
    except (OSError, IndexError, ValueError):
        return None


def own_ticks(pid: int | None = None) -> int:
    """CPU ticks of `pid`'s process group and of every descendant of `pid` outside it."""
    pid = os.getpid() if pid is None else pid
    pgid = os.getpgid(pid)
    table = {p: s for p in os.listdir("/proc") if p.isdigit() and (s := _proc_stat(p)) is not None}
    mine = {int(p) for p, (_, group, _) in table.items() if group == pgid} | {pid}
    grew = True
    while grew:       # descendants that started a session or group of their own
        new = {int(p) for p, (parent, _, _) in table.items() if parent in mine and int(p) not in mine}
        mine |= new
        grew = bool(new)
    return sum(table[str(p)][2] for p in mine if str(p) in table)


def snapshot(cores: tuple[int, ...] | None = None) -> Snapshot | None:
    """The host's counters now; None where /proc cannot be read (not Linux)."""
    cores = tuple(sorted(os.sched_getaffinity(0))) if cores is None else cores
    try:
        with open("/proc/stat") as f:
            busy, steal = cpu_ticks(cores, f.read())
        return Snapshot(time.monotonic(), os.getloadavg()[0], cores, busy, steal, own_ticks())
    except OSError:
        return None


def window(before: Snapshot | None, after: Snapshot | None) -> dict[str, Any] | None:
    """What other work took of the run's cores between two snapshots (see the module's doc)."""
    if before is None or after is None or before.cores != after.cores:
        return None
    window_s = after.monotonic_s - before.monotonic_s
    busy_s = (after.busy_ticks - before.busy_ticks) * TICK_S
    own_s = (after.own_ticks - before.own_ticks) * TICK_S
    # Tick truncation can make own exceed busy by a few ticks on an otherwise idle core.
    other_s = max(0.0, busy_s - own_s)
    capacity_s = window_s * len(before.cores)
    return {"cores": list(before.cores), "window_s": window_s,
            "loadavg_1m_before": before.loadavg_1m, "loadavg_1m_after": after.loadavg_1m,
            "cores_busy_cpu_s": busy_s, "own_cpu_s": own_s, "other_cpu_s": other_s,
            "steal_cpu_s": (after.steal_ticks - before.steal_ticks) * TICK_S,
            "other_share": other_s / capacity_s if capacity_s > 0 else None, "source": SOURCE}

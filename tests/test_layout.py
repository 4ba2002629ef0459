"""The layout shows the process boundary: docs/DESIGN.md's map of packages is the tree, and the
orchestrator side imports neither torch nor the worker side."""
from __future__ import annotations

import json
import re
import subprocess
import sys

from conftest import REPO

HARNESS = REPO / "harness"


def design_map() -> dict[str, str]:
    """path under harness/ (a module, or a package ending in /) -> its side, from DESIGN.md."""
    text = (REPO / "docs" / "DESIGN.md").read_text()
    block = text.split("### The map of packages", 1)[1].split("```", 2)[1]
    entries, parents = {}, []
    for line in block.strip("\n").splitlines()[1:]:        # below `harness/`
        m = re.match(r"( +)(\S+)\s+(\S+)", line)
        assert m, f"DESIGN.md's map: cannot read {line!r}"
        depth = len(m.group(1)) // 2 - 1
        parents = parents[:depth]
        path = "".join(parents) + m.group(2)
        entries[path] = m.group(3)
        if path.endswith("/"):
            parents.append(m.group(2))
    return entries


def tree() -> set[str]:
    """Every module under harness/, with the packages whose modules the map lists one by one."""
    listed = {"orchestrator/", "worker/"}
    found = set()
    for path in HARNESS.rglob("*.py"):
        rel = path.relative_to(HARNESS).as_posix()
        package = rel.split("/")[0] + "/" if "/" in rel else ""
        if rel.endswith("__init__.py") and package in listed:
            continue
        found.add(rel if package in ("", *listed) else package)
    return found | listed


def test_the_design_map_is_the_tree():
    entries = design_map()
    in_map = {p for p in entries if p != "__init__.py"}
    assert in_map == tree() - {"__init__.py"}, (
        f"DESIGN.md's map and harness/ differ: only in the map {sorted(in_map - tree())}, "
        f"only in the tree {sorted(tree() - in_map)}")
    for path, side in entries.items():
        if path.startswith("orchestrator/"):
            assert side == "orchestrator", path
        if path.startswith("worker/"):
            assert side == "worker", path


def imported_by(modules: list[str]) -> list[str]:
    code = ("import importlib, json, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'jax', 'pandas') "
            "or m.startswith('harness.worker'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_the_orchestrator_side_imports_neither_torch_nor_the_worker_side():
    # every module of harness.orchestrator (cli discovers every plugin's schema as it imports)
    modules = [f"harness.orchestrator.{p.stem}" for p in (HARNESS / "orchestrator").glob("*.py")]
    assert len(modules) >= 8
    assert imported_by(["harness.orchestrator", *modules]) == []


def test_the_shared_modules_import_no_torch():
    shared = [f"harness.{p}".removesuffix(".py") for p, side in design_map().items()
              if side == "shared" and p.endswith(".py")]
    assert "harness.protocol" in shared
    assert imported_by(shared) == []

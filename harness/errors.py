"""User mistakes become one line and exit code 2, never a traceback."""
from __future__ import annotations

import os
import sys
from typing import Callable, NoReturn

CONFIG_ERROR_EXIT = 2


class ConfigError(ValueError):
    """A bad parameter: names the config key and what was expected."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"{key}: {message}")


class Unsupported(RuntimeError):
    """The backend tried and cannot run this program here (an op it has no lowering for):
    the run is `skipped` with this reason, not `failed`."""


class CpuFallback(RuntimeError):
    """`device=auto` on a node with GPUs found none through torch: the run fails with this status
    and never quietly measures the CPU (a GPU sweep once ran on the CPU that way)."""


class InputError(ValueError):
    """A file a user handed us that we cannot read: names the file (and line)."""


def die(message: str, code: int = CONFIG_ERROR_EXIT) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def exit_quietly_on_broken_pipe(main: Callable[[], int | None]) -> NoReturn:
    """Run a CLI's `main` and exit with its code; a reader that stops early (`| head`) ends
    it quietly with 0 instead of a BrokenPipeError traceback. A finished CLI leaves without
    the interpreter's teardown: freeing a 100 MB trace's objects one by one took 0.2 s of a
    1.7 s run, and its files are closed and its output flushed by then."""
    try:
        code = main()
        sys.stdout.flush()   # inside the try: a buffered tail fails here, not at exit
    except BrokenPipeError:
        # Python flushes stdout again at exit and would fail again: point it at nothing
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    sys.stderr.flush()
    os._exit(code or 0)

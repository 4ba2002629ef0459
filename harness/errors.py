"""User mistakes become one line and exit code 2, never a traceback."""
from __future__ import annotations

import sys

CONFIG_ERROR_EXIT = 2


class ConfigError(ValueError):
    """A bad parameter: names the config key and what was expected."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


class InputError(ValueError):
    """A file a user handed us that we cannot read: names the file (and line)."""


def die(message: str, code: int = CONFIG_ERROR_EXIT) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)

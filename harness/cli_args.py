"""Command-line parsing for the offline tools (harness.report, harness.kernels, harness.memory):
every numeric argument is checked where it is parsed, and every mistake is one line, exit 2.

argparse's own `type=float` takes `nan`, `inf` and `-1000` without a word: `compare --threshold
nan` once turned the regression gate off (every `ratio > 1 + nan` is False), and
`--sm-clock-mhz=-1000` scaled the peaks by a negative clock. `number(...)` refuses them.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable

from harness.errors import die


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (`error: PROG: argument --k: ...`, exit 2) instead
    of a usage block followed by the message."""

    def error(self, message: str) -> None:   # type: ignore[override]
        die(f"{self.prog}: {message} (see --help)")


def number(*, integer: bool = False, minimum: float | None = None,
           above: float | None = None) -> Callable[[str], float | int]:
    """An argparse `type=`: a finite number (an integer where `integer`), at least `minimum`
    or strictly above `above`; anything else is argparse's one-line error naming the option."""
    expected = "an integer" if integer else "a finite number"
    if minimum is not None:
        expected += f" >= {minimum:g}"
    if above is not None:
        expected += f" > {above:g}"

    def parse(text: str) -> float | int:
        try:
            value: float | int = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not math.isfinite(value) or (minimum is not None and value < minimum) \
                or (above is not None and value <= above):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = "integer" if integer else "number"
    return parse

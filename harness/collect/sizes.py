"""Byte counts read from compiler dumps, checked where they are read.

The tables hold bytes as int64 (pandas `Int64`, Parquet INT64). A dump that says
`allocation 0: size 18446744074020716544` parsed into a Python int and then died as an
`OverflowError` traceback when the table was built; a negative shape
(`empty_strided_cpu((-64, 1024), ...)`) became -262,144 bytes and shrank the total. Both are
refused here with the file and line.
"""
from __future__ import annotations

from harness.errors import InputError

INT64_MAX = 2 ** 63 - 1


def byte_count(value: int, path: str, line: int, what: str) -> int:
    """`value` if it is a byte count a table can hold; else one line naming file:line."""
    if value < 0:
        raise InputError(f"{path}:{line}: {what} is negative ({value} bytes); expected a size >= 0")
    if value > INT64_MAX:
        raise InputError(f"{path}:{line}: {what} of {value} bytes is beyond int64 (at most "
                         f"{INT64_MAX}); expected a real size")
    return value

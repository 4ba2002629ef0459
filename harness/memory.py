"""`python -m harness.memory FILE [FILE...]`: any memory dump -> the memory table.

Files are recognised by content: an XLA buffer assignment (the older single file, or the
newer `-buffer-assignment.txt`, whose `-values`, `-live-range` and `-memory-usage-report`
siblings are picked up from the same folder), one of those siblings on its own, or Inductor
output code (one table per compiled graph). Prints the summary and the largest buffers;
`--csv` / `--parquet` write the summary there and the buffers next to it
(`x.csv` -> `x.buffers.csv`). Malformed input: one line `error: <file>:<line>: ...`, exit 2.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from harness.cli_args import Parser, number
from harness.collect.memory_table import memory_table_from_files
from harness.errors import InputError, die, exit_quietly_on_broken_pipe


def human_bytes(n) -> str:
    if n is None or pd.isna(n):
        return ""
    n = int(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return ""


def _with_size(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out.insert(out.columns.get_loc("bytes") + 1, "size", out["bytes"].map(human_bytes))
    return out


def _sidecar(path: Path) -> Path:
    return path.with_name(f"{path.stem}.buffers{path.suffix}")


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m harness.memory", description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="dump files (XLA or Inductor)")
    parser.add_argument("--top", type=number(integer=True, minimum=0), default=15,
                        help="buffers to show per graph (default 15)")
    parser.add_argument("--csv", type=Path, help="write the summary here, buffers to <stem>.buffers.csv")
    parser.add_argument("--parquet", type=Path, help="write the summary here, buffers to <stem>.buffers.parquet")
    args = parser.parse_args(argv)
    try:
        summary, buffers = memory_table_from_files(args.files)
    except InputError as e:
        die(str(e))
    _write(summary, buffers, args)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_colwidth", 80)
    print("memory summary (bytes; workspace notes say whether it overlaps other kinds)")
    print(_with_size(summary).to_string(index=False))
    top = buffers.groupby("graph", sort=False).head(args.top)
    print(f"\nlargest buffers (top {args.top} per graph)")
    print(_with_size(top).to_string(index=False))
    return 0


def _write(summary: pd.DataFrame, buffers: pd.DataFrame, args: argparse.Namespace) -> None:
    """Written before anything is printed: a reader that stops early (`| head`) does not
    lose the files."""
    try:
        if args.csv:
            summary.to_csv(args.csv, index=False)
            buffers.to_csv(_sidecar(args.csv), index=False)
        if args.parquet:
            summary.to_parquet(args.parquet, index=False)
            buffers.astype({"peak": "boolean", "offset": "Int64", "bytes": "Int64"}).to_parquet(
                _sidecar(args.parquet), index=False)
    except (OSError, ImportError, ValueError) as e:
        die(f"cannot write the table: {e}")


if __name__ == "__main__":
    exit_quietly_on_broken_pipe(main)

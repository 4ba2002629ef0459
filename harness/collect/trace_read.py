"""A trace file's JSON text: plain, or gzip of one or several members (`cat a.gz b.gz`, pigz
and bgzip write several). Nothing but the standard library, so that a process that only
scans a trace's text (kineto_scan.scan_in_background) imports nothing else."""
from __future__ import annotations

import contextlib
import gc
import zlib
from pathlib import Path
from typing import Iterator

from harness.errors import InputError

_GZIP_MAGIC = b"\x1f\x8b"


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """A 100 MB trace or dump is millions of small objects made at once; the cyclic collector
    would rescan them over and over (orjson.loads of 28 MB: 3.7 s with GC, 0.8 s without;
    a third of the buffer-assignment parse). Nothing we build has cycles, so pause it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def read_bytes(path: str | Path) -> bytes:
    """The JSON text of a trace file, gunzipped if it is gzip (every member of it)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a trace file "
                         "(trace.json[.gz] or perfetto_trace.json.gz)") from None
    return _gunzip(raw, path) if raw[:2] == _GZIP_MAGIC else raw


def _gunzip(raw: bytes, path: Path) -> bytes:
    """All members of a gzip file. zlib.decompress stops after the first member without a
    word (a two-member file gave half a trace); a member cut short is an error."""
    out = []
    rest = raw
    while rest:
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            # one call over the whole buffer: about twice gzip.open().read()'s speed
            out.append(inflate.decompress(rest))
        except zlib.error as e:
            raise InputError(f"{path}: truncated or corrupt gzip ({e})") from None
        if not inflate.eof:
            raise InputError(f"{path}: truncated or corrupt gzip (Error -5 while decompressing "
                             "data: incomplete or truncated stream)")
        rest = inflate.unused_data.lstrip(b"\x00")   # gzip pads some files with zeros
        if rest and rest[:2] != _GZIP_MAGIC:
            raise InputError(f"{path}: corrupt gzip: {len(rest)} bytes of something else after "
                             f"gzip member {len(out)}")
    return b"".join(out)

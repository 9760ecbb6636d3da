"""Streaming reads and partitioned writes now live in the stage I/O layer (:mod:`._io`).

This module keeps the old import path working; new code imports from ``ceap_stage._io``.
"""

from __future__ import annotations

from ._io import (
    DEFAULT_MAX_SINGLE_OBJECT_BYTES,
    DEFAULT_PART_BYTES,
    PartWriter,
    dumps_line,
    encode_records,
    initial_records,
    put_output,
    write_record_stream,
)

__all__ = [
    "DEFAULT_MAX_SINGLE_OBJECT_BYTES",
    "DEFAULT_PART_BYTES",
    "PartWriter",
    "dumps_line",
    "encode_records",
    "initial_records",
    "put_output",
    "write_record_stream",
]

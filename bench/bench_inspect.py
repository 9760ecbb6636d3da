"""Inspecting executions: ``show --head 10`` on a 1 GB output, ``executions`` over 10,000.

- ``show --head 10`` on a 1 GB JSON Lines output (generated once under the temp directory and
  kept for later runs): the time of ``ceap-stage show EXECUTION STAGE --head 10`` in-process,
  against reading 10 lines of the file by hand; and the bytes read through a
  :class:`~ceap_stage.testing.CountingStore` (target: under 1 MB).
- ``executions`` over 10,000 executions of one stage each (a LocalStore, generated once): the
  requests ``list_executions(limit=20)`` makes, counted, against the executions in the bucket
  (one listing of executions, then per execution one listing of its stages and one HEAD per
  stage: about 2 per execution here, whatever the number of objects under each).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import tempfile
import time
from pathlib import Path

import orjson

from ._harness import Result

GIGABYTE = 1 << 30
EXECUTIONS = 10_000
BUCKET = "bench-inspect"


def _big_output(root: Path) -> Path:
    """A 1 GB JSON Lines ``output.json`` under ``root`` (written once, streamed)."""
    path = root / BUCKET / "executions/run-big/Big/output.json"
    if path.exists() and path.stat().st_size >= GIGABYTE:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    line = orjson.dumps({"id": 0, "text": "x" * 240}) + b"\n"
    block = line * (4 * 1024 * 1024 // len(line))
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        written = 0
        while written < GIGABYTE:
            out.write(block)
            written += len(block)
    os.replace(tmp, path)
    return path


def _many_executions(root: Path) -> None:
    marker = root / "complete"
    if marker.exists():
        return
    from ceap_stage import LocalStore
    from ceap_stage._io import OutputRef, StageIO

    stage_io = StageIO(LocalStore(root))
    for n in range(EXECUTIONS):
        stage_io.write_document(OutputRef(BUCKET, f"run-{n:05d}", "ETL"), [n], records=1)
    marker.write_text("ok")


def run() -> list[Result]:
    from ceap_stage import LocalStore
    from ceap_stage._cli import main
    from ceap_stage.testing import CountingStore
    from ceap_stage.workflow import Execution, list_executions

    base = Path(tempfile.gettempdir()) / "ceap-bench-inspect"
    results: list[Result] = []

    # show --head 10 on 1 GB
    big_root = base / "big"
    path = _big_output(big_root)
    counting = CountingStore(LocalStore(big_root))
    output = Execution(counting, BUCKET, "run-big").stage("Big")
    first = list(itertools.islice(output.records(chunk_size=64 * 1024), 10))
    assert len(first) == 10
    sink = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(sink):
        status = main(
            [
                "show",
                "run-big",
                "Big",
                "--store",
                big_root.as_uri(),
                "--bucket",
                BUCKET,
                "--head",
                "10",
            ]
        )
    seconds = time.perf_counter() - start
    assert status == 0, status
    assert len(sink.getvalue().splitlines()) == 10
    start = time.perf_counter()
    with open(path, "rb") as handle:
        lines = [orjson.loads(handle.readline()) for _ in range(10)]
    hand = time.perf_counter() - start
    assert lines == first
    results.append(
        Result(
            "show --head 10, 1 GB JSON Lines (ms, vs 10 lines by hand)",
            seconds * 1000,
            hand * 1000,
            "ms",
            note=f"{path.stat().st_size / 1e9:.2f} GB output, {counting.bytes_read} bytes read",
        )
    )
    results.append(
        Result(
            "show --head 10, 1 GB JSON Lines: bytes read (vs 1 MB)",
            counting.bytes_read / 1000,
            1000,
            "kB",
            target=1.0,
        )
    )

    # executions over 10,000
    many_root = base / "many"
    _many_executions(many_root)
    counting = CountingStore(LocalStore(many_root))
    start = time.perf_counter()
    newest = list_executions(counting, BUCKET, limit=20)
    seconds = time.perf_counter() - start
    assert len(newest) == 20
    results.append(
        Result(
            f"executions over {EXECUTIONS:,}: requests (vs executions)",
            counting.total_requests,
            EXECUTIONS,
            "req",
            target=2.01,
            note=f"{dict(counting.requests)}, {seconds:.1f} s on a LocalStore",
        )
    )
    return results

"""``ceap-stage check`` on a 20-stage workflow (``bench/check_workflow.py``).

- ``check, fresh process``: the whole command as a user runs it (interpreter start, imports,
  handlers, schemas, 20 edges, five of them by the property-based method), against the budget
  the command must answer within: 2 seconds (the ratio is the share of the budget used). The
  process's CPU time is noted beside it: on a busy machine the wall time is mostly waiting.
- ``check, in process``: :func:`check_workflow` alone, against the floor any checker pays:
  building the writer and reader JSON Schemas of the same 20 edges.
"""

from __future__ import annotations

import itertools
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ._harness import Result, median_time

_BUDGET_SECONDS = 2.0
_WORKFLOW = "bench/check_workflow.py"


def _fresh_process() -> tuple[float, float]:
    """Median wall and CPU seconds of ``ceap-stage check`` in a new process.

    On a shared machine the wall time includes waiting for a core; the CPU time does not.
    """
    cli = Path(sys.executable).with_name("ceap-stage")
    walls, cpus = [], []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run([str(cli), "check", _WORKFLOW], check=True, capture_output=True)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def run() -> list[Result]:
    from ceap_stage._models import writer_schema
    from ceap_stage.workflow import check_workflow, load_handler, load_workflow
    from ceap_stage.workflow._compat import reader_schema

    fresh, fresh_cpu = _fresh_process()
    loaded = load_workflow(_WORKFLOW)
    report = check_workflow(loaded)
    assert report.ok, report.lines()
    assert len(report.edges) == 20
    handlers = [load_handler(str(getattr(s, "handler", ""))) for s in loaded.config.steps]
    specs = [h.runtime.spec for h in handlers]  # type: ignore[attr-defined]

    def schemas_only() -> None:
        for before, after in itertools.pairwise(specs):
            writer_schema(before.output_adapter)
            reader_schema(after.input_adapter)

    in_process = median_time(lambda: check_workflow(loaded), number=1, repeat=5)
    floor = median_time(schemas_only, number=1, repeat=5)
    methods = sorted({e.method for e in report.edges})
    return [
        Result(
            "check, 20 stages, fresh process (vs the 2 s budget)",
            fresh * 1000,
            _BUDGET_SECONDS * 1000,
            "ms",
            target=1.0,
            note=f"CPU {fresh_cpu * 1000:.0f} ms",
        ),
        Result(
            "check, 20 stages, in process (vs building the schemas)",
            in_process * 1000,
            floor * 1000,
            "ms",
            note=f"methods: {', '.join(methods)}",
        ),
    ]

"""Fan-out, locally: shards in parallel processes, memory per shard, planning without reading.

Figures (ratios measured in the same run, on the machine's own cores, printed first):

- 1,000,000 records through the fanned-out, CPU-bound, record-wise ``Score`` stage of
  ``examples/fanout``: ``--workers 2`` against ``--workers 1`` (target: at least 1.6x faster,
  i.e. a ratio <= 0.625 on two cores), and ``--workers 1`` against the same stage not fanned out
  (target: within 1.10x). Each variant runs the stage's local attempt exactly as ``ceap-stage
  run`` does, over the same generated input.
- The peak memory of a shard process against the size of its shard's input and of the whole
  input (printed; bounded by the shard, not by the input).
- The bytes of record data a plan reads, over a manifest of 1,000 parts and over a 1 GB JSON
  Lines object, counted by a store wrapper (target: none).

The machine may be loaded by other work: the load average is printed beside the timings.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ceap_stage import LocalStore
from ceap_stage._formats import JSONL, ManifestPart
from ceap_stage._io import OutputRef, StageIO, output_metadata
from ceap_stage._settings import resolve_settings
from ceap_stage.testing import CountingStore
from ceap_stage.workflow import LoadedWorkflow
from ceap_stage.workflow._kinds import LocalStepRun, kind_of

from ._harness import Result

RECORDS = 1_000_000
RECORDS_PER_SHARD = 50_000
EXECUTION = "bench-fanout"


def _attempt_seconds(config: Any, store: LocalStore, workers: int) -> tuple[float, dict[str, Any]]:
    """Run step 1 (``Score``) once as the local runner does; its wall time and details."""
    shutil.rmtree(store.path(config.workflow_bucket, f"executions/{EXECUTION}/Score"), True)
    run = LocalStepRun(
        config=config,
        workflow=LoadedWorkflow(config, Path.cwd(), Path.cwd()),
        store=store,
        settings=resolve_settings(store_url=store.root.as_uri()),
        index=1,
        execution_id=EXECUTION,
        initial_input=None,
        measure=lambda stage: (None, None),
        stage_scope=contextlib.nullcontext,
        workers=workers,
    )
    attempt = kind_of(config.steps[1]).local_attempt(run)
    started = time.perf_counter()
    records, _ = attempt(0)
    seconds = time.perf_counter() - started
    assert records == RECORDS, records
    return seconds, run.details


def _parallel(tmp: Path) -> list[Result]:
    # The example is imported by name (examples/ is not a package mypy maps as one).
    generate = importlib.import_module("examples.fanout.stages").generate
    example = importlib.import_module("examples.fanout.workflow")
    sample_input, scoring_workflow = example.sample_input, example.scoring_workflow
    fanned = scoring_workflow(RECORDS_PER_SHARD)
    plain = scoring_workflow(None)
    store = LocalStore(tmp / "parallel")
    event = {
        "executionId": EXECUTION,
        "currentStage": "Generate",
        "previousStage": None,
        "workflowBucket": fanned.workflow_bucket,
        "initialData": sample_input(RECORDS),
    }
    generate.runtime.using_store(store).invoke(event)
    described = StageIO(store).describe(OutputRef(fanned.workflow_bucket, EXECUTION, "Generate"))
    assert described is not None
    assert described.manifest is not None
    input_bytes = described.manifest.total_bytes
    timings: dict[str, list[float]] = {"w2": [], "w1": [], "plain": []}
    details: dict[str, Any] = {}
    for _ in range(2):  # interleaved, best of two: the machine is shared
        seconds, details = _attempt_seconds(fanned, store, 2)
        timings["w2"].append(seconds)
        timings["w1"].append(_attempt_seconds(fanned, store, 1)[0])
        timings["plain"].append(_attempt_seconds(plain, store, 1)[0])
    best = {name: min(values) for name, values in timings.items()}
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    shards = int(details.get("shards", 0))
    peak = int(details.get("peak_shard_process_bytes", 0))
    mib = 1024 * 1024
    return [
        Result(
            f"1M records, fanned out: --workers 2 vs --workers 1 ({os.cpu_count()} cores)",
            best["w2"],
            best["w1"],
            "s",
            target=1 / 1.6,
            note=f"load average {load}; all runs {timings}",
        ),
        Result(
            "1M records: fanned out --workers 1 vs the stage not fanned out",
            best["w1"],
            best["plain"],
            "s",
            target=1.10,
        ),
        Result(
            "peak memory of a shard process vs the whole input (MiB)",
            peak / mib,
            input_bytes / mib,
            "MiB",
            note=(
                f"{shards} shards of ~{RECORDS_PER_SHARD} records, "
                f"~{input_bytes / max(shards, 1) / mib:.1f} MiB of input each"
            ),
        ),
    ]


def _planning(tmp: Path) -> list[Result]:
    score = importlib.import_module("examples.fanout.stages").score
    results = []
    local = LocalStore(tmp / "planning")
    store = CountingStore(local)
    io = StageIO(store)
    bucket = "ceap-bench-plan"
    # A manifest of 1,000 parts of 100 records each.
    parts_ref = OutputRef(bucket, "bench-parts", "Generate")
    line = b'{"sensor":"s-1","sequence":1,"payload":"' + b"ab" * 40 + b'"}\n'
    parts = []
    for n in range(1000):
        key = f"{parts_ref.writer_prefix('bench')}part-{n:05d}.jsonl"
        store.put(bucket, key, line * 100, content_type=JSONL)
        parts.append(ManifestPart(key, len(line) * 100))
    io.commit(parts_ref, parts, 100_000, metadata=output_metadata(parts_ref, 100_000))
    # A 1 GB JSON Lines object (written in chunks, its record count in its metadata).
    big_ref = OutputRef(bucket, "bench-big", "Generate")
    chunk = line * ((1 << 20) // len(line))
    copies = (1 << 30) // len(chunk)
    records = copies * chunk.count(b"\n")
    store.put(
        bucket, big_ref.key, b"", content_type=JSONL, metadata=output_metadata(big_ref, records)
    )
    with local.path(bucket, big_ref.key).open("ab") as handle:
        for _ in range(copies):
            handle.write(chunk)
    runtime = score.runtime.using_store(store)
    for name, ref, data_keys in (
        ("a manifest of 1,000 parts", parts_ref, {p.key for p in parts}),
        ("a 1 GB JSON Lines object", big_ref, {big_ref.key}),
    ):
        store.bytes_read_by_key.clear()
        pointer = runtime.invoke(
            {
                "executionId": ref.execution_id,
                "currentStage": "Score",
                "previousStage": "Generate",
                "workflowBucket": bucket,
                "ceapPhase": "plan",
                "recordsPerShard": RECORDS_PER_SHARD,
            }
        )
        data_bytes = sum(
            info.size for key in data_keys if (info := store.head(bucket, key)) is not None
        )
        record_bytes = sum(n for key, n in store.bytes_read_by_key.items() if key in data_keys)
        other = sum(n for key, n in store.bytes_read_by_key.items() if key not in data_keys)
        results.append(
            Result(
                f"plan over {name}: record bytes read vs its data",
                float(record_bytes),
                float(data_bytes),
                "B",
                target=0.0,
                note=f"{pointer['shards']} shards; other bytes read (manifest): {other}",
            )
        )
    return results


def run() -> list[Result]:
    print(f"cores: {os.cpu_count()}; load average: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="ceap-bench-fanout-") as tmp:
        results = _planning(Path(tmp))
        results.extend(_parallel(Path(tmp)))
    return results

"""Input validates the same whatever its format, label or store.

pydantic validates JSON text (JSON mode) and Python values (Python mode) differently for strict
models: JSON mode reads a ``date`` from an ISO string, Python mode refuses a ``str``. A stage
must accept the same input from a labelled S3 document (validated from its text) as from a
LocalStore file (sniffed), JSON Lines, a manifest, a stream or ``initialData``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import orjson
import pytest
from pydantic import BaseModel, ConfigDict, TypeAdapter

from ceap_stage import InputValidationError, stage
from ceap_stage._formats import JSONL, MANIFEST
from ceap_stage._models import json_sensitive

from ._helpers import RUN, key_of, make_event
from .conftest import Backend

RECORDS = [{"user_id": "u1", "day": "2026-11-01"}, {"user_id": "u2", "day": "2026-11-02"}]


class Visit(BaseModel):
    model_config = ConfigDict(strict=True)

    user_id: str
    day: date


def _jsonl(records: list[dict[str, str]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (orjson.dumps(RECORDS), None),
        (orjson.dumps(RECORDS), "application/json"),
        (_jsonl(RECORDS), JSONL),
        (_jsonl(RECORDS), None),
    ],
    ids=["json-sniffed", "json-labelled", "jsonl-labelled", "jsonl-sniffed"],
)
def test_a_strict_model_reads_dates_from_every_format(
    backend: Backend, body: bytes, content_type: str | None
) -> None:
    backend.put_raw(key_of("Filter"), body, content_type)
    seen: list[list[Visit]] = []

    @stage(store=backend.store)
    def handler(visits: list[Visit]) -> int:
        seen.append(visits)
        return len(visits)

    assert handler(make_event())["recordsProcessed"] == 1
    assert [v.day for v in seen[0]] == [date(2026, 11, 1), date(2026, 11, 2)]


def test_a_strict_model_reads_dates_from_a_manifest_and_a_stream(backend: Backend) -> None:
    part_key = f"executions/{RUN}/Filter/parts/part-00000.jsonl"
    part = _jsonl(RECORDS)
    backend.put_raw(part_key, part, JSONL)
    manifest = {
        "ceap": "manifest/1",
        "format": "jsonl",
        "records": 2,
        "parts": [{"key": part_key, "bytes": len(part)}],
    }
    backend.put_raw(key_of("Filter"), orjson.dumps(manifest), MANIFEST)

    @stage(store=backend.store)
    def listed(visits: list[Visit]) -> list[date]:
        return [v.day for v in visits]

    @stage(store=backend.store, name="Stream")
    def streamed(visits: Iterator[Visit]) -> list[date]:
        return [v.day for v in visits]

    assert listed(make_event())["recordsProcessed"] == 2
    assert streamed(make_event(current_stage="Stream"))["recordsProcessed"] == 2
    assert backend.read(key_of("Stream")) == b'["2026-11-01","2026-11-02"]'


def test_initial_data_is_validated_like_text(backend: Backend) -> None:
    @stage(store=backend.store, name="Ingest")
    def ingest(visit: Visit) -> Visit:
        return visit

    event = make_event(current_stage="Ingest", previous_stage=None, initial_data=RECORDS[0])
    assert ingest(event)["recordsProcessed"] == 1


def test_the_strict_model_still_refuses_what_it_refuses(backend: Backend) -> None:
    backend.put_raw(key_of("Filter"), orjson.dumps([{"user_id": 7, "day": "2026-11-01"}]))

    @stage(store=backend.store)
    def handler(visits: list[Visit]) -> int:
        return len(visits)

    with pytest.raises(InputValidationError) as caught:
        handler(make_event())
    assert "[0].user_id" in str(caught.value)
    assert backend.read(key_of("Score")) is None


class Tagged(BaseModel):
    type: str  # a field named "type" sits in the core schema beside schema types
    strict: bool = False


def test_which_models_are_json_sensitive() -> None:
    assert not json_sensitive(TypeAdapter(list[Tagged]))
    assert json_sensitive(TypeAdapter(list[Visit]))
    assert json_sensitive(TypeAdapter(dict[str, bytes]))
    assert not json_sensitive(TypeAdapter(list[dict[str, int]]))
    assert not json_sensitive(TypeAdapter(dict))

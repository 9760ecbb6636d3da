"""The stages of the fan-out example: generate many records, then score each (CPU-bound).

``generate`` is a first stage: it reads one SQS message saying how many records to make and
streams them out (a manifest of JSON Lines parts, never all in memory). ``score`` is a
record-wise, CPU-bound stage: each record is scored on its own, so it can be fanned out, one
shard of records per invocation, and gives the same records in the same order either way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel

from ceap_stage import stage

#: How many SHA-256 rounds score one record (the CPU work of the stage).
ROUNDS = 40


class Reading(BaseModel):
    """A sensor reading."""

    sensor: str
    sequence: int
    payload: str


class Scored(BaseModel):
    """A reading with its score."""

    sensor: str
    sequence: int
    score: int


def _payload(sequence: int) -> str:
    return hashlib.sha256(sequence.to_bytes(8, "big")).hexdigest() * 3


@stage
def generate(messages: list[dict[str, Any]]) -> Iterator[Reading]:
    """Make ``records`` readings for each message (``{"records": N}``)."""
    sequence = 0
    for message in messages:
        for _ in range(int(message["records"])):
            yield Reading(
                sensor=f"s-{sequence % 97}", sequence=sequence, payload=_payload(sequence)
            )
            sequence += 1


def score_one(reading: Reading) -> int:
    """The CPU-bound part: a chain of SHA-256 rounds over the payload."""
    digest = reading.payload.encode()
    for _ in range(ROUNDS):
        digest = hashlib.sha256(digest).digest()
    return int.from_bytes(digest[:4], "big")


@stage
def score(readings: Iterable[Reading]) -> Iterator[Scored]:
    """Score every reading, one by one."""
    for reading in readings:
        yield Scored(sensor=reading.sensor, sequence=reading.sequence, score=score_one(reading))

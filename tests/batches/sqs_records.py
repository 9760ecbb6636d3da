"""SQS records shaped as an EventBridge Pipe delivers them from a standard or FIFO queue.

Written for these tests: the field names and value formats are those of a real SQS record
(``messageId`` a UUID, ``receiptHandle`` an opaque token, string ``attributes``, typed
``messageAttributes``, the body's MD5, the queue's ARN and region).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

REGION = "eu-west-1"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:123456789012:engagement-events"
FIFO_QUEUE_ARN = f"arn:aws:sqs:{REGION}:123456789012:engagement-events.fifo"


def message_id(n: int) -> str:
    """A stable UUID for record ``n`` (so that a test can name the ones it expects)."""
    return str(uuid.UUID(int=0x5F1C9A2E_0B7D_4C1E_9A55_000000000000 + n))


def sqs_record(
    n: int, body: str, *, fifo: bool = False, attributes: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Record ``n`` of a batch with ``body`` (a string, as SQS carries it)."""
    sent = 1_764_460_800_000 + n * 37
    attrs = {
        "ApproximateReceiveCount": "1",
        "SentTimestamp": str(sent),
        "SenderId": "AROAEXAMPLE123456789:engagement-producer",
        "ApproximateFirstReceiveTimestamp": str(sent + 412),
    }
    if fifo:
        attrs |= {
            "MessageGroupId": f"customer-{n % 4}",
            "MessageDeduplicationId": hashlib.sha256(body.encode()).hexdigest(),
            "SequenceNumber": str(18_849_496_460_467_696_128 + n),
        }
    attrs |= attributes or {}
    return {
        "messageId": message_id(n),
        "receiptHandle": f"AQEB{hashlib.sha1(str(n).encode()).hexdigest()}Zx9mN2Lh+w==",
        "body": body,
        "attributes": attrs,
        "messageAttributes": {
            "tenant": {
                "stringValue": "marketplace-eu",
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            }
        },
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": FIFO_QUEUE_ARN if fifo else QUEUE_ARN,
        "awsRegion": REGION,
    }


def engagement_body(n: int) -> str:
    return json.dumps({"customerId": f"C{n:05d}", "score": round(0.5 + n / 100, 2)})


#: Indices of the three invalid records of the 50-record batch.
INVALID = (7, 23, 41)


def batch_of_50() -> list[dict[str, Any]]:
    """50 records; 7 has a body that is not JSON, 23 misses ``score``, 41 has a bad score."""
    records = []
    for n in range(50):
        body = engagement_body(n)
        if n == 7:
            body = "customer C00007 clicked"  # plain text: not JSON
        elif n == 23:
            body = json.dumps({"customerId": "C00023"})
        elif n == 41:
            body = json.dumps({"customerId": "C00041", "score": "high"})
        records.append(sqs_record(n, body))
    return records

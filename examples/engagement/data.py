"""Realistic, deterministic input: an EventBridge Pipes batch of SQS messages, one session each.

The batch is what the pipe hands the state machine: a list of SQS records whose ``body`` is a
JSON string. The same seed always gives the same batch, so runs and tests are reproducible.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from .models import EVENT_WEIGHTS

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:engagement-events"
_START = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
_TYPES = list(EVENT_WEIGHTS)
_TYPE_WEIGHTS = [50, 25, 6, 12, 7]  # view, click, share, add_to_cart, purchase
_AGENTS = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/120.0 Mobile",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
]


def _session(rng: random.Random, index: int, customers: int) -> dict[str, Any]:
    customer = f"cust-{rng.randrange(customers):04d}"
    if rng.random() < 0.05:
        customer = f"test-{rng.randrange(10):02d}"  # internal test accounts, filtered out
    channel = rng.choice(["web", "web", "ios", "android", "email", "Web", "IOS"])
    agent = rng.choices(_AGENTS, weights=[40, 30, 25, 5])[0]
    start = _START + timedelta(minutes=index * 3 + rng.randrange(3))
    events = []
    for n in range(rng.randint(3, 30)):
        kind = rng.choices(_TYPES, weights=_TYPE_WEIGHTS)[0]
        if rng.random() < 0.03:
            kind = "Add-To-Cart" if kind == "add_to_cart" else "scroll"  # legacy / unknown names
        event_id = str(uuid.UUID(int=rng.getrandbits(128)))
        events.append(
            {
                "event_id": event_id,
                "type": kind,
                "product_id": f"sku-{rng.randrange(500):05d}" if kind != "view" or n % 2 else None,
                "occurred_at": (start + timedelta(seconds=n * rng.randint(5, 90))).isoformat(),
                "value_cents": rng.randrange(500, 25_000) if kind == "purchase" else 0,
            }
        )
        if rng.random() < 0.02:
            events.append(dict(events[-1]))  # an at-least-once duplicate
    return {
        "session_id": f"sess-{index:06d}",
        "customer_id": customer,
        "channel": channel,
        "user_agent": agent,
        "events": events,
    }


def sqs_record(body: dict[str, Any], *, index: int, sent: datetime) -> dict[str, Any]:
    """An SQS message as EventBridge Pipes delivers it (``body`` is a JSON string)."""
    text = json.dumps(body, separators=(",", ":"))
    message_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"engagement/{index}/{body['session_id']}"))
    return {
        "messageId": message_id,
        "receiptHandle": f"AQEB{hashlib.sha1(message_id.encode()).hexdigest()}",
        "body": text,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": str(int(sent.timestamp() * 1000)),
            "SenderId": "AIDAEXAMPLE1234567890",
            "ApproximateFirstReceiveTimestamp": str(int(sent.timestamp() * 1000) + 40),
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(text.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": "us-east-1",
    }


def sample_batch(messages: int = 50, *, seed: int = 7, customers: int = 25) -> list[dict[str, Any]]:
    """A Pipes batch of ``messages`` SQS records, each a customer session (deterministic).

    Example:
        >>> batch = sample_batch(3)
        >>> len(batch), batch[0]["eventSource"], sample_batch(3) == batch
        (3, 'aws:sqs', True)
    """
    rng = random.Random(seed)
    return [
        sqs_record(_session(rng, i, customers), index=i, sent=_START + timedelta(minutes=i * 3))
        for i in range(messages)
    ]

"""Fixtures for the workflow tests."""

from __future__ import annotations

import pytest

from tests.workflow import handlers


@pytest.fixture(autouse=True)
def _fresh_handler_state():
    handlers.EVENTS.clear()
    handlers.ATTEMPTS.clear()
    handlers.FLAKY_FAILURES["count"] = 1

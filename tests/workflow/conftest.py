"""Fixtures for the workflow tests."""

from __future__ import annotations

import pytest

from tests.workflow import handlers


@pytest.fixture(autouse=True)
def _fresh_handler_state():
    handlers.EVENTS.clear()
    handlers.ATTEMPTS.clear()
    handlers.STORE_URLS.clear()
    handlers.FLAKY_FAILURES["count"] = 1
    handlers.KOTLIN_CALLS = 0
    yield
    handlers.BUG["on"] = True  # a test that fixed the simulated bug leaves it as it found it


from tests.workflow._moto_sfn import sfn  # noqa: E402, F401  (the moto Step Functions fixture)

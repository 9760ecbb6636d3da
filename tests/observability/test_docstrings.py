"""The observability modules' docstring examples run."""

from __future__ import annotations

import doctest

import ceap_stage._observability as observability
import ceap_stage._powertools as powertools


def test_the_docstring_examples_run() -> None:
    for module in (observability, powertools):
        failures, tests = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert tests > 0, module.__name__
        assert failures == 0, module.__name__

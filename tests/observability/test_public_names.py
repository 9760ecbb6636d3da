"""``ceap_stage.observability``: a sorted public surface, every name documented with an example."""

from __future__ import annotations

import doctest
import inspect

import ceap_stage._observability as private_observability
import ceap_stage._tracing as private_tracing
from ceap_stage import observability


def test_all_is_sorted_unique_and_every_name_imports() -> None:
    names = observability.__all__
    assert names == sorted(names)
    assert len(set(names)) == len(names)
    namespace: dict[str, object] = {}
    exec("from ceap_stage.observability import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == names


def test_what_a_user_needs_to_write_their_own_is_public() -> None:
    needed = {"Observer", "InvocationStats", "TracingProvider", "Span", "AttributeValue", "Sink"}
    needed |= {"Logs", "Metrics", "StageObserver", "use_sink"}
    assert needed <= set(observability.__all__)


def test_every_class_and_function_has_a_docstring_with_an_example() -> None:
    for name in observability.__all__:
        value = getattr(observability, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__doc__, name
            assert "Example" in value.__doc__, name


def test_the_old_private_imports_still_work() -> None:
    from ceap_stage._observability import (
        Capture,
        InvocationStats,
        Observer,
        capture,
        default_observer,
    )
    from ceap_stage._powertools import PowertoolsObserver

    assert Observer is observability.Observer
    assert InvocationStats is observability.InvocationStats
    assert Capture is observability.Capture
    assert capture is observability.capture
    assert default_observer is observability.default_observer
    assert PowertoolsObserver is observability.PowertoolsObserver


def test_the_docstring_examples_run() -> None:
    for module in (private_observability, private_tracing):
        failures, tests = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert tests > 0, module.__name__
        assert failures == 0, module.__name__

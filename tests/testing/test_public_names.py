"""ceap_stage.testing's public surface: sorted, importable, documented with an example."""

from __future__ import annotations

import doctest
import inspect

import ceap_stage.testing
from ceap_stage.testing import _events, _lambda, _moto, _run


def test_all_is_sorted_and_every_name_imports() -> None:
    names = ceap_stage.testing.__all__
    assert names == sorted(names)
    for name in names:
        assert hasattr(ceap_stage.testing, name)


def test_every_class_and_function_has_a_docstring_with_an_example() -> None:
    for name in ceap_stage.testing.__all__:
        value = getattr(ceap_stage.testing, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__doc__, name
            assert "Example" in value.__doc__, name


def test_the_docstring_examples_run() -> None:
    import ceap_stage._observability as observability

    for module in (_events, _lambda, _moto, _run, observability):
        failures, tests = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert tests > 0, module.__name__
        assert failures == 0, module.__name__

"""docs/contract.md section 6: model inference (once, by parameter) and HandlerDefinitionError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from ceap_stage import (
    ExecutionContext,
    HandlerDefinitionError,
    LocalStore,
    StageHandler,
    WorkflowLambdaHandler,
    stage,
)
from ceap_stage._models import adapter_for, resolve

from ._helpers import BUCKET, Event, Scored, Total, key_of, make_event


class NotAModel:
    """A plain class pydantic cannot validate."""

    def __init__(self, value: int) -> None:
        self.value = value


# -- inference --------------------------------------------------------------------------------


def test_models_come_from_the_parameter_and_the_return_annotation():
    @stage
    def handler(events: list[Event], ctx: ExecutionContext) -> list[Scored]:
        return []

    assert isinstance(handler, StageHandler)
    assert handler.spec.input_model == list[Event]
    assert handler.spec.output_model == list[Scored]
    assert handler.spec.pass_context is True
    assert handler.spec.input_is_list is True
    assert handler.spec.output_is_list is True


def test_inference_is_by_parameter_not_first_annotation():
    # Powertools infers from the first annotation found; here the data parameter has none.
    with pytest.raises(HandlerDefinitionError, match="parameter 'event' has no annotation"):

        @stage
        def handler(event, ctx: ExecutionContext) -> Total:
            raise AssertionError

    @stage
    def typed(event: dict[str, Any], ctx: ExecutionContext) -> Total:
        raise AssertionError

    assert typed.spec.input_model == dict[str, Any]


def test_explicit_models_win_over_annotations():
    @stage(input_model=list[Event], output_model=Total)
    def handler(events: list[dict[str, Any]]) -> dict[str, Any]:
        return {}

    assert handler.spec.input_model == list[Event]
    assert handler.spec.output_model is Total


def test_explicit_models_make_annotations_unnecessary():
    @stage(input_model=list[int], output_model=int)
    def handler(numbers):
        return sum(numbers)

    assert handler.spec.input_model == list[int]
    assert handler.spec.pass_context is False


def test_models_are_resolved_once_at_decoration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import inspect

    import ceap_stage._models as models

    @stage(store=LocalStore(tmp_path))
    def handler(events: list[Event]) -> int:
        return len(events)

    calls: list[str] = []
    real_signature = inspect.signature
    real_adapter = models.TypeAdapter  # type: ignore[attr-defined]

    def counting_signature(*args: Any, **kwargs: Any) -> Any:
        calls.append("signature")
        return real_signature(*args, **kwargs)

    def counting_adapter(*args: Any, **kwargs: Any) -> Any:
        calls.append("TypeAdapter")
        return real_adapter(*args, **kwargs)

    monkeypatch.setattr(inspect, "signature", counting_signature)
    monkeypatch.setattr(models, "TypeAdapter", counting_adapter)
    for _ in range(3):
        handler(make_event(previous_stage=None, initial_data=[{"user_id": "u", "kind": "view"}]))
    assert calls == []


def test_the_context_parameter_is_optional(tmp_path: Path):
    @stage(store=LocalStore(tmp_path))
    def handler(events: list[Event]) -> int:
        return len(events)

    assert handler.spec.pass_context is False
    result = handler(make_event(previous_stage=None, initial_data=[]))
    assert result["recordsProcessed"] == 1
    assert (tmp_path / BUCKET / key_of("Score")).read_bytes() == b"0"


def test_the_context_parameter_is_optional_in_a_class_too(tmp_path: Path):
    class CountStage(WorkflowLambdaHandler[list[Event], int]):
        # Type checkers want the base class's (data, ctx); the runtime honours a process
        # without the context, as it does for @stage functions.
        def process(self, data: list[Event]) -> int:  # type: ignore[override]
            return len(data)

    handler = CountStage(store=LocalStore(tmp_path))
    assert handler.runtime.spec.pass_context is False
    result = handler(make_event(previous_stage=None, initial_data=[{"user_id": "u", "kind": "v"}]))
    assert result["recordsProcessed"] == 1
    assert (tmp_path / BUCKET / key_of("Score")).read_bytes() == b"1"


@pytest.mark.parametrize("annotation", [Any, object])
def test_the_context_parameter_may_be_loosely_annotated(annotation):
    def handler(events: list[Event], ctx: Any) -> int:
        return 0

    handler.__annotations__["ctx"] = annotation
    assert resolve(handler).pass_context is True


def test_any_type_adapter_model_is_accepted():
    @stage
    def handler(data: dict[str, Any]) -> list[int] | None:
        return None

    assert handler.spec.output_adapter.validate_python(None) is None


def test_none_return_means_a_null_output(tmp_path: Path):
    @stage(store=LocalStore(tmp_path))
    def handler(data: dict[str, Any]) -> None:
        return None

    result = handler(make_event(previous_stage=None, initial_data={}))
    assert (tmp_path / BUCKET / key_of("Score")).read_bytes() == b"null"
    assert result["recordsProcessed"] == 1


def test_the_undecorated_function_stays_reachable():
    def score(events: list[Event]) -> list[Scored]:
        """Score events."""
        return [Scored(user_id=e.user_id, score=e.weight * 2) for e in events]

    handler = stage(score)
    assert handler.fn is score
    assert handler.__wrapped__ is score  # type: ignore[attr-defined]
    assert handler.__name__ == "score"  # type: ignore[attr-defined]
    assert handler.__doc__ == "Score events."
    assert handler.fn([Event(user_id="u", kind="view", weight=2)]) == [
        Scored(user_id="u", score=4.0)
    ]


def test_adapters_are_cached_per_model():
    assert adapter_for(list[Event]) is adapter_for(list[Event])


# -- HandlerDefinitionError at decoration -------------------------------------------------------


def _no_params() -> int:
    return 0


def _unannotated_data(data) -> int:
    return 0


def _no_return(data: int):
    return 0


def _keyword_only(data: int, *, limit: int) -> int:
    return 0


def _three_required(data: int, ctx: ExecutionContext, extra: int) -> int:
    return 0


def _bad_context(data: int, ctx: int) -> int:
    return 0


def _unusable_input(data: NotAModel) -> int:
    return 0


def _unusable_output(data: int) -> NotAModel:
    return NotAModel(data)


def _undefined_name(data: UndefinedModel) -> int:  # type: ignore[name-defined]  # noqa: F821
    return 0


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (_no_params, "takes its input as the first parameter"),
        (_unannotated_data, "parameter 'data' has no annotation"),
        (_no_return, "has no return annotation"),
        (_keyword_only, "keyword-only parameter 'limit' has no default"),
        (_three_required, r"required parameters \['extra'\]"),
        (_bad_context, "receives the ExecutionContext but is annotated int"),
        (_unusable_input, "NotAModel cannot be used as a model"),
        (_unusable_output, "NotAModel cannot be used as a model"),
        (_undefined_name, "names something that is not defined"),
        (len, "parameter .obj. has no annotation"),
    ],
)
def test_unusable_signatures_fail_at_decoration(fn, match):
    with pytest.raises(HandlerDefinitionError, match=match) as info:
        stage(fn)
    assert isinstance(info.value, TypeError)  # also a TypeError, as Python users expect


def test_optional_extra_parameters_are_allowed():
    def handler(data: int, ctx: ExecutionContext, verbose: bool = False, *, limit: int = 3) -> int:
        return data

    assert stage(handler).spec.pass_context is True


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"output_format": "xml"}, "output_format must be one of"),
        ({"output_format": "jsonl", "output_model": Total}, "needs a list-like output model"),
        ({"name": "bad/name"}, "the stage name is unusable"),
        ({"name": ""}, "the stage name is unusable"),
    ],
)
def test_unusable_options_fail_at_decoration(options, match):
    def handler(events: list[Event]) -> list[Scored]:
        return []

    with pytest.raises(HandlerDefinitionError, match=match):
        stage(**options)(handler)


# -- WorkflowLambdaHandler ----------------------------------------------------------------------


class SumStage(WorkflowLambdaHandler[list[Scored], Total]):
    name = "Sum"

    def process(self, data: list[Scored], ctx: ExecutionContext) -> Total:
        return Total(users=len({s.user_id for s in data}), score=sum(s.score for s in data))


def test_class_models_come_from_the_generic_parameters(tmp_path: Path):
    assert SumStage._spec is not None
    assert SumStage._spec.input_model == list[Scored]
    assert SumStage._spec.output_model is Total
    store = LocalStore(tmp_path)
    store.put(BUCKET, key_of("Score"), b'[{"user_id":"a","score":1.5},{"user_id":"b","score":2}]')
    handler = SumStage(store=store)
    result = handler(make_event(current_stage="Sum", previous_stage="Score"))
    assert result["stage"] == "Sum"
    assert orjson.loads((tmp_path / BUCKET / key_of("Sum")).read_bytes()) == {
        "users": 2,
        "score": 3.5,
    }


def test_class_name_pins_the_stage(tmp_path: Path):
    from ceap_stage import ContextResolutionError

    with pytest.raises(ContextResolutionError, match="this handler is stage 'Sum'"):
        SumStage(store=LocalStore(tmp_path))(make_event(current_stage="Other"))


def test_class_without_generic_parameters_uses_process_annotations():
    class Plain(WorkflowLambdaHandler):  # type: ignore[type-arg]
        def process(self, data: list[Event], ctx: ExecutionContext) -> int:
            return len(data)

    assert Plain._spec is not None
    assert Plain._spec.input_model == list[Event]
    assert Plain._spec.output_model is int


def test_class_explicit_models_win_over_generic_parameters():
    class Explicit(WorkflowLambdaHandler[list[dict[str, Any]], dict[str, Any]]):
        input_model = list[Event]
        output_model = Total

        def process(self, data: list[dict[str, Any]], ctx: ExecutionContext) -> dict[str, Any]:
            return {}

    assert Explicit._spec is not None
    assert Explicit._spec.input_model == list[Event]
    assert Explicit._spec.output_model is Total


def test_an_abstract_intermediate_class_is_resolved_in_its_subclass():
    from abc import abstractmethod

    class Base(WorkflowLambdaHandler[list[Event], int]):
        @abstractmethod
        def process(self, data: list[Event], ctx: ExecutionContext) -> int: ...

    class Count(Base):
        def process(self, data: list[Event], ctx: ExecutionContext) -> int:
            return len(data)

    assert Base._spec is None
    assert Count._spec is not None
    assert Count._spec.input_model == list[Event]
    assert Count().process([Event(user_id="u", kind="k")], None) == 1  # type: ignore[arg-type]


def test_bad_class_definitions_fail_at_class_creation():
    with pytest.raises(HandlerDefinitionError, match="NotAModel cannot be used as a model"):

        class BadModel(WorkflowLambdaHandler[NotAModel, int]):
            def process(self, data: NotAModel, ctx: ExecutionContext) -> int:
                return 0

    with pytest.raises(HandlerDefinitionError, match="needs a list-like output model"):

        class BadFormat(WorkflowLambdaHandler[list[Event], Total]):
            output_format = "jsonl"

            def process(self, data: list[Event], ctx: ExecutionContext) -> Total:
                raise AssertionError

    with pytest.raises(HandlerDefinitionError, match="the stage name is unusable"):

        class BadName(WorkflowLambdaHandler[list[Event], int]):
            name = "a b"

            def process(self, data: list[Event], ctx: ExecutionContext) -> int:
                return 0

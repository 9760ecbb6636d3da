"""Evaluating the generated Parameters templates locally, as Step Functions does."""

from __future__ import annotations

import pytest

from ceap_stage.workflow._paths import (
    UnsupportedExpressionError,
    escape_intrinsic_literal,
    evaluate_parameters,
    evaluate_path,
)

CONTEXT = {"Execution": {"Name": "run-1", "RedriveCount": 0}, "State": {"RetryCount": 2}}


def test_paths_read_the_context_object_and_the_state_input():
    state_input = {"a": {"b": [1, 2]}}
    assert evaluate_path("$", state_input, CONTEXT) is state_input
    assert evaluate_path("$.a.b", state_input, CONTEXT) == [1, 2]
    assert evaluate_path("$$.State.RetryCount", state_input, CONTEXT) == 2


@pytest.mark.parametrize("path", ["$.a[0]", "$..b", "$.missing", "Execution.Name"])
def test_unsupported_or_unresolvable_paths_fail_loudly(path):
    with pytest.raises(UnsupportedExpressionError):
        evaluate_path(path, {"a": [1]}, CONTEXT)


def test_format_and_json_to_string_evaluate_like_the_intrinsics():
    template = {
        "key.$": "States.Format('executions/{}/S/output.json', $$.Execution.Name)",
        "two.$": "States.Format('{}-{}', $$.Execution.Name, $$.State.RetryCount)",
        "body.$": "States.JsonToString($)",
        "nested": {"plain": None, "list": [{"id.$": "$$.Execution.Name"}]},
    }
    assert evaluate_parameters(template, [{"x": 1}], CONTEXT) == {
        "key": "executions/run-1/S/output.json",
        "two": "run-1-2",
        "body": '[{"x":1}]',
        "nested": {"plain": None, "list": [{"id": "run-1"}]},
    }


@pytest.mark.parametrize("name", ["it's", "a{b}", "brace}{", "back'{}'"])
def test_escaped_literals_round_trip_through_format(name):
    literal = escape_intrinsic_literal(f"executions/{{}}/{name}/out")
    # The placeholder we want kept must be unescaped again.
    literal = literal.replace("\\{\\}", "{}", 1)
    result = evaluate_parameters(
        {"k.$": f"States.Format('{literal}', $$.Execution.Name)"}, None, CONTEXT
    )
    assert result == {"k": f"executions/run-1/{name}/out"}


@pytest.mark.parametrize(
    "expression",
    [
        "States.Array($$.Execution.Name)",
        "States.Format('{} {}', $$.Execution.Name)",
        "States.Format('unterminated, $$.Execution.Name)",
        "States.Format('x'",
    ],
)
def test_intrinsics_the_runner_cannot_follow_fail_loudly(expression):
    with pytest.raises(UnsupportedExpressionError):
        evaluate_parameters({"k.$": expression}, None, CONTEXT)


def test_a_non_string_path_value_is_refused():
    with pytest.raises(UnsupportedExpressionError):
        evaluate_parameters({"k.$": 3}, None, CONTEXT)

"""Evaluate the ASL ``Parameters`` this package generates, as Step Functions would.

The local runner sends each stage what the state machine would send by evaluating the very
``Parameters`` template the ASL generator produced, against a context object shaped like Step
Functions' (``$$.Execution.Name``, ``$$.State.RetryCount``, ...). Only the subset of JSONPath
and intrinsic functions the generator emits is supported: plain dotted paths (``$``, ``$.a.b``,
``$$.Execution.Name``), ``States.Format`` and ``States.JsonToString``. Anything else is a
:class:`UnsupportedExpressionError`, so a generator change that the runner cannot follow fails
loudly instead of silently sending a different event.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = [
    "UnsupportedExpressionError",
    "escape_intrinsic_literal",
    "evaluate_parameters",
    "evaluate_path",
]

_PATH = re.compile(r"\$\$?(\.[A-Za-z_][A-Za-z0-9_]*)*")
_SPECIAL = ("\\", "'", "{", "}")


class UnsupportedExpressionError(ValueError):
    """A ``Parameters`` value uses JSONPath or an intrinsic function the runner cannot evaluate."""


def escape_intrinsic_literal(text: str) -> str:
    """Escape a string for use inside an intrinsic function's quoted literal.

    Example:
        >>> escape_intrinsic_literal("it's {x}")
        "it\\\\'s \\\\{x\\\\}"
    """
    for char in _SPECIAL:
        text = text.replace(char, "\\" + char)
    return text


def evaluate_path(path: str, state_input: Any, context: Mapping[str, Any]) -> Any:
    """Evaluate a dotted path: ``$...`` against the state input, ``$$...`` the context object.

    Example:
        >>> evaluate_path("$$.Execution.Name", None, {"Execution": {"Name": "run-1"}})
        'run-1'
    """
    if not _PATH.fullmatch(path):
        raise UnsupportedExpressionError(f"unsupported path {path!r}")
    value: Any = context if path.startswith("$$") else state_input
    for name in path.lstrip("$").split(".")[1:]:
        if not isinstance(value, Mapping) or name not in value:
            raise UnsupportedExpressionError(f"the path {path!r} does not resolve")
        value = value[name]
    return value


def _parse_literal(text: str, start: int) -> tuple[list[str | None], int]:
    """Parse a quoted literal from ``text[start] == "'"``; ``None`` marks a ``{}``."""
    pieces: list[str | None] = []
    buffer: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            buffer.append(text[i + 1])
            i += 2
        elif char == "'":
            pieces.append("".join(buffer))
            return pieces, i + 1
        elif text.startswith("{}", i):
            pieces.extend(["".join(buffer), None])
            buffer = []
            i += 2
        else:
            buffer.append(char)
            i += 1
    raise UnsupportedExpressionError("unterminated string literal in an intrinsic function")


def _split_args(text: str) -> list[str | list[str | None]]:
    args: list[str | list[str | None]] = []
    i = 0
    while i < len(text):
        if text[i] in " ,":
            i += 1
        elif text[i] == "'":
            literal, i = _parse_literal(text, i)
            args.append(literal)
        else:
            end = text.find(",", i)
            end = len(text) if end < 0 else end
            args.append(text[i:end].strip())
            i = end
    return args


def _render(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _evaluate_intrinsic(expression: str, state_input: Any, context: Mapping[str, Any]) -> Any:
    name, _, rest = expression.partition("(")
    if not rest.endswith(")"):
        raise UnsupportedExpressionError(f"unsupported expression {expression!r}")
    args = _split_args(rest[:-1])
    if name == "States.JsonToString" and len(args) == 1 and isinstance(args[0], str):
        return orjson.dumps(evaluate_path(args[0], state_input, context)).decode()
    if name == "States.Format" and args and isinstance(args[0], list):
        template, values = args[0], args[1:]
        if sum(piece is None for piece in template) != len(values):
            raise UnsupportedExpressionError("States.Format: placeholders and arguments differ")
        rendered = iter(
            _render(evaluate_path(v, state_input, context))
            if isinstance(v, str)
            else "".join(p for p in v if p is not None)
            for v in values
        )
        return "".join(next(rendered) if piece is None else piece for piece in template)
    raise UnsupportedExpressionError(f"unsupported intrinsic function {name!r}")


def evaluate_parameters(template: Any, state_input: Any, context: Mapping[str, Any]) -> Any:
    """Evaluate a ``Parameters`` (or ``Payload``) template the way Step Functions does.

    Keys ending in ``.$`` take the value of their path or intrinsic function, under the key
    without the suffix; other values are copied.

    Example:
        >>> evaluate_parameters(
        ...     {"executionId.$": "$$.Execution.Name", "stage": "A",
        ...      "key.$": "States.Format('executions/{}/A/output.json', $$.Execution.Name)"},
        ...     [], {"Execution": {"Name": "run-1"}})
        {'executionId': 'run-1', 'stage': 'A', 'key': 'executions/run-1/A/output.json'}
    """
    if isinstance(template, Mapping):
        result: dict[str, Any] = {}
        for key, value in template.items():
            if key.endswith(".$"):
                if not isinstance(value, str):
                    raise UnsupportedExpressionError(f"{key!r} must hold a path or a function")
                if value.startswith("$"):
                    result[key[:-2]] = evaluate_path(value, state_input, context)
                else:
                    result[key[:-2]] = _evaluate_intrinsic(value, state_input, context)
            else:
                result[key] = evaluate_parameters(value, state_input, context)
        return result
    if isinstance(template, list):
        return [evaluate_parameters(item, state_input, context) for item in template]
    return template

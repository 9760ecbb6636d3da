"""Glue scripts' declared Spark schemas, read without running them or PySpark, as JSON Schemas.

A Glue stage declares its input with ``read_input(schema="customer_id STRING NOT NULL, ...")``
or ``@glue_stage(schema=...)``, and may declare its output with a module-level
``OUTPUT_SCHEMA`` DDL string. Read in ``FAILFAST`` mode, a ``STRING`` column takes any JSON
value (Spark keeps its text), numbers must fit their column's type, a ``NOT NULL`` column must
be present and not null, and undeclared fields are dropped. Written (``ignoreNullFields`` off),
every column is present, null when nullable.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "GlueDeclarations",
    "SparkField",
    "parse_ddl",
    "read_glue_declarations",
    "spark_reader_schema",
    "spark_writer_schema",
]

_INT_RANGES = {
    "TINYINT": 2**7,
    "BYTE": 2**7,
    "SMALLINT": 2**15,
    "SHORT": 2**15,
    "INT": 2**31,
    "INTEGER": 2**31,
}
# 64-bit columns: Python ints beyond 64 bits are not considered (they would refuse every int).
_LONGS = frozenset({"BIGINT", "LONG"})
_FLOATS = frozenset({"FLOAT", "REAL", "DOUBLE"})
_TOKEN = re.compile(r"\s*(<|>|\(|\)|,|:|`[^`]*`|[A-Za-z_][A-Za-z0-9_]*|\d+)")


@dataclass(frozen=True)
class SparkField:
    """One column: its name, type (a nested tuple) and whether it may be null."""

    name: str
    type: Any
    nullable: bool = True


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens: list[str] = []
        position = 0
        text = text.strip()
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None:
                raise ValueError(f"cannot read the schema at {text[position : position + 20]!r}")
            self.tokens.append(match.group(1))
            position = match.end()
            while position < len(text) and text[position].isspace():
                position += 1
        self.at = 0

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token.upper() != expected):
            raise ValueError(f"expected {expected or 'more'} in the schema, found {token!r}")
        self.at += 1
        return token

    def fields(self, closing: str | None) -> list[SparkField]:
        result = []
        while self.peek() is not None and self.peek() != closing:
            name = self.take().strip("`")
            if self.peek() == ":":
                self.take()
            kind = self.type()
            nullable = True
            if (self.peek() or "").upper() == "NOT":
                self.take()
                self.take("NULL")
                nullable = False
            result.append(SparkField(name, kind, nullable))
            if self.peek() == ",":
                self.take()
        return result

    def type(self) -> Any:
        name = self.take().upper()
        if name == "ARRAY":
            self.take("<")
            item = self.type()
            self.take(">")
            return ("ARRAY", item)
        if name == "MAP":
            self.take("<")
            key = self.type()
            self.take(",")
            value = self.type()
            self.take(">")
            return ("MAP", key, value)
        if name == "STRUCT":
            self.take("<")
            inner = self.fields(">")
            self.take(">")
            return ("STRUCT", tuple(inner))
        if self.peek() == "(":  # DECIMAL(10, 2), VARCHAR(20)
            while self.take() != ")":
                pass
        return name


def parse_ddl(text: str) -> list[SparkField]:
    """Parse a Spark DDL schema string (``"a STRING NOT NULL, b ARRAY<LONG>"``).

    Raises:
        ValueError: The text is not a schema this parser reads.

    Example:
        >>> [(f.name, f.type, f.nullable) for f in parse_ddl("a STRING NOT NULL, b LONG")]
        [('a', 'STRING', False), ('b', 'LONG', True)]
    """
    parser = _Parser(text)
    fields = parser.fields(None)
    if parser.peek() is not None or not fields:
        raise ValueError(f"cannot read {text!r} as a Spark schema")
    return fields


def _type_schema(kind: Any, *, writing: bool) -> dict[str, Any]:
    if isinstance(kind, tuple):
        if kind[0] == "ARRAY":
            return {"type": "array", "items": _nullable(kind[1], writing)}
        if kind[0] == "MAP":
            return {"type": "object", "additionalProperties": _nullable(kind[2], writing)}
        return _struct(kind[1], writing=writing)
    if kind in _INT_RANGES:
        bound = _INT_RANGES[kind]
        return {"type": "integer", "minimum": -bound, "maximum": bound - 1}
    if kind in _LONGS:
        return {"type": "integer"}
    if kind in _FLOATS or kind in ("DECIMAL", "NUMERIC", "DEC"):
        return {"type": "number"}
    if kind == "BOOLEAN":
        return {"type": "boolean"}
    if kind == "DATE":
        return {"type": "string", "format": "date"}
    if kind in ("TIMESTAMP", "TIMESTAMP_NTZ", "TIMESTAMP_LTZ"):
        return {"type": "string", "format": "date-time"}
    if kind in ("STRING", "VARCHAR", "CHAR", "BINARY"):
        return {"type": "string"} if writing else {}  # a string column reads any JSON value
    raise ValueError(f"unknown Spark type {kind}")


def _nullable(kind: Any, writing: bool) -> dict[str, Any]:
    inner = _type_schema(kind, writing=writing)
    return {"anyOf": [inner, {"type": "null"}]} if inner else inner


def _struct(fields: tuple[SparkField, ...] | list[SparkField], *, writing: bool) -> dict[str, Any]:
    properties = {
        f.name: _nullable(f.type, writing) if f.nullable else _type_schema(f.type, writing=writing)
        for f in fields
    }
    required = [f.name for f in fields if writing or not f.nullable]
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    if writing:
        schema["additionalProperties"] = False
    return schema


def spark_reader_schema(ddl: str) -> dict[str, Any]:
    """What a Glue stage reading with ``schema=ddl`` accepts: rows, as a list or one object.

    Example:
        >>> spark_reader_schema("n LONG NOT NULL")["anyOf"][1]["required"]
        ['n']
    """
    row = _struct(parse_ddl(ddl), writing=False)
    return {"anyOf": [{"type": "array", "items": row}, row]}


def spark_writer_schema(ddl: str) -> dict[str, Any]:
    """What a Glue stage whose output has schema ``ddl`` writes: records (JSON Lines parts).

    Example:
        >>> spark_writer_schema("n LONG")["items"]["required"]
        ['n']
    """
    return {"type": "array", "items": _struct(parse_ddl(ddl), writing=True)}


@dataclass(frozen=True)
class GlueDeclarations:
    """What a Glue script declares, read from its source without running it."""

    input_ddl: str | None = None
    input_unknown: str = "the script declares no schema= for read_input / @glue_stage"
    output_ddl: str | None = None
    output_model: Any = None


def _literal(node: ast.expr, constants: dict[str, ast.expr]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in constants:
        return _literal(constants[node.id], constants)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _literal(node.left, constants), _literal(node.right, constants)
        return left + right if left is not None and right is not None else None
    return None


def read_glue_declarations(script: Path) -> GlueDeclarations:
    """Find a Glue script's declared input schema and output schema or model.

    The input: the ``schema=`` of ``read_input``/``job.read_input``/``@glue_stage``, a string
    literal or a module-level constant. The output: a module-level ``OUTPUT_SCHEMA`` (a DDL
    string) or ``OUTPUT_MODEL`` (a pydantic model of one record; the script is then imported,
    under a name that is not ``__main__``, to get it).

    Example:
        >>> read_glue_declarations(Path("examples/engagement/glue_score.py")).input_ddl[:19]
        'event_id STRING, se'
    """
    tree = ast.parse(script.read_text(encoding="utf-8"), filename=str(script))
    constants: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                constants[target.id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            constants[node.target.id] = node.value
    schemas: list[str | None] = []
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call):
            continue
        name = getattr(call.func, "attr", None) or getattr(call.func, "id", None)
        if name not in ("read_input", "glue_stage"):
            continue
        value = next((k.value for k in call.keywords if k.arg == "schema"), None)
        if value is None and name == "read_input" and isinstance(call.func, ast.Attribute):
            value = call.args[0] if call.args else None  # job.read_input(SCHEMA)
        if value is not None:
            schemas.append(_literal(value, constants))
    input_ddl, unknown = None, GlueDeclarations.input_unknown
    if len(set(schemas)) > 1:
        unknown = "the script reads its input with several schemas"
    elif schemas and schemas[0] is None:
        unknown = "the script's schema= is not a string literal or module-level constant"
    elif schemas:
        input_ddl = schemas[0]
    output_ddl = (
        _literal(constants["OUTPUT_SCHEMA"], constants) if "OUTPUT_SCHEMA" in constants else None
    )
    output_model = None
    if "OUTPUT_MODEL" in constants:
        module_name = f"_ceap_check_{abs(hash(str(script.resolve())))}"
        spec = importlib.util.spec_from_file_location(module_name, script)
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
            output_model = module.OUTPUT_MODEL
    return GlueDeclarations(input_ddl, unknown, output_ddl, output_model)

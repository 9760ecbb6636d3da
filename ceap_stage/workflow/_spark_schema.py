"""Spark schemas (DDL strings) as JSON Schemas, without PySpark: what ``check`` compares.

A Glue stage declares its input with ``read_input(schema="customer_id STRING NOT NULL, ...")``
or ``@glue_stage(schema=...)``, and may declare its output with a module-level
``OUTPUT_SCHEMA`` DDL string. Read in ``FAILFAST`` mode, a ``STRING`` column takes any JSON
value (Spark keeps its text), numbers must fit their column's type, a ``NOT NULL`` column must
be present and not null, and undeclared fields are dropped. Written (``ignoreNullFields`` off),
every column is present, null when nullable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["SparkField", "parse_ddl", "spark_reader_schema", "spark_writer_schema"]

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

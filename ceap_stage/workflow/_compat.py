"""Whether every value one model may write is accepted by another: the engine of ``check``.

Two methods, tried in this order:

1. **Structural**: the writer's JSON Schema (pydantic, serialization mode, every field written)
   is compared with the reader's (validation mode), node by node: types (``integer`` fits
   ``number``, not the reverse), required fields, ``additionalProperties: false``
   (``extra="forbid"``), enums and literals, unions, arrays, nested models through ``$ref``,
   numeric and length bounds. It proves compatibility, or finds the first field at fault and
   builds a whole document the writer may write that shows it; that document is then *confirmed*
   by pydantic (the writer model accepts and writes it, the reader model refuses it), so an
   INCOMPATIBLE verdict always comes with a real counterexample.
2. **Property-based**: where the structure cannot decide (patterns, formats, validators and
   serializers pydantic cannot describe, unions it cannot resolve, an unconfirmed
   counterexample), values are generated from the writer's schema, smallest first, put through
   the writer model and written as the stage writes them, and validated by the reader model.
   The first refused value is the counterexample (minimal by construction: sizes only grow);
   when all pass, the verdict is OK by that method, with the number of examples.

The generator is deterministic (seeded), bounded by an example budget, and needs no library.
"""

from __future__ import annotations

import functools
import math
import random
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson
from pydantic import PydanticUserError, TypeAdapter, ValidationError

from ceap_stage._models import schema_fingerprint, writer_schema

__all__ = [
    "DEFAULT_BUDGET",
    "Compatibility",
    "ContractSide",
    "StageContract",
    "compare_schemas",
    "has_functions",
    "reader_schema",
    "schema_fingerprint",
    "writer_schema",
]

#: Examples tried per edge by the property-based method.
DEFAULT_BUDGET: Final = 200

Verdict = Literal["OK", "INCOMPATIBLE", "UNCHECKED"]
_NOTHING: Final[Any] = object()


def reader_schema(adapter: TypeAdapter[Any]) -> dict[str, Any]:
    """The JSON Schema of what ``adapter``'s model accepts (validation mode, by alias).

    Example:
        >>> reader_schema(TypeAdapter(list[int]))
        {'items': {'type': 'integer'}, 'type': 'array'}
    """
    return adapter.json_schema(mode="validation", by_alias=True)


def has_functions(adapter: TypeAdapter[Any], *, serialization: bool) -> bool:
    """Whether the model runs code a JSON Schema cannot show.

    For a reader: validators (``field_validator``, ``model_validator``, ``AfterValidator``...).
    For a writer (``serialization=True``): custom serializers.
    """
    pending: list[Any] = [adapter.core_schema]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            kind = node.get("type")
            if serialization:
                ser = node.get("serialization")
                if isinstance(ser, dict) and str(ser.get("type", "")).startswith("function"):
                    return True
            elif isinstance(kind, str) and kind.startswith("function-"):
                return True
            pending.extend(v for k, v in node.items() if k != "serialization" or serialization)
        elif isinstance(node, (list, tuple)):
            pending.extend(node)
    return False


@dataclass(frozen=True)
class Compatibility:
    """What the engine found for one writer/reader pair.

    Attributes:
        verdict: ``OK``, ``INCOMPATIBLE`` or ``UNCHECKED``.
        method: ``structural`` or ``property``.
        field: The first field at fault (``[0].total``), for INCOMPATIBLE.
        example: A whole document the writer may write that the reader refuses.
        reason: Why it is incompatible (the reader's complaint) or unchecked.
        examples: How many generated values the property-based method tried.

    Example:
        >>> Compatibility("OK", "structural").has_example
        False
    """

    verdict: Verdict
    method: str
    field: str | None = None
    example: Any = _NOTHING
    reason: str = ""
    examples: int = 0

    @property
    def has_example(self) -> bool:
        """Whether :attr:`example` holds a counterexample."""
        return self.example is not _NOTHING


@functools.cache
def _cached_schema(adapter: TypeAdapter[Any], reading: bool) -> dict[str, Any]:
    return reader_schema(adapter) if reading else writer_schema(adapter)


@dataclass(frozen=True)
class ContractSide:
    """What one stage reads or writes, as far as it is known: what ``check`` compares.

    Attributes:
        schema: The JSON Schema of the values (None when unknown).
        adapter: The pydantic adapter that validates (reader) or writes (writer) them, when
            there is one: it confirms counterexamples and drives the property-based method.
        label: How to name it (``list[Order]``, ``Spark schema``).
        model: The Python model, when there is one (schema drift compares its fingerprint).
        unknown: Why the side is not known (then ``schema`` is None).

    Example:
        >>> side = ContractSide.of_model(list[int], reading=True)
        >>> side.label, side.schema
        ('list[int]', {'items': {'type': 'integer'}, 'type': 'array'})
    """

    schema: dict[str, Any] | None = None
    adapter: TypeAdapter[Any] | None = None
    label: str = ""
    model: Any = None
    unknown: str = ""

    @classmethod
    def of_model(
        cls, model: Any, *, reading: bool, adapter: TypeAdapter[Any] | None = None
    ) -> ContractSide:
        """The side of a pydantic model (``adapter`` defaults to the model's cached one)."""
        from ceap_stage._models import adapter_for, model_name

        name = model_name(model)
        try:
            adapter = adapter or adapter_for(model)
            return cls(_cached_schema(adapter, reading), adapter, name, model)
        except PydanticUserError as exc:  # e.g. a field of an arbitrary type
            why = f"pydantic cannot describe {name} as a JSON Schema ({type(exc).__name__})"
            return cls(label=name, model=model, unknown=why)

    @classmethod
    def unknown_because(cls, why: str) -> ContractSide:
        """A side nothing is known of, and why."""
        return cls(unknown=why)


@dataclass(frozen=True)
class StageContract:
    """What one step reads and writes, and what is wrong with it on its own.

    Each step kind builds its steps' contracts (``StepKind.contract``).

    Attributes:
        reads: What the step accepts.
        writes: What the step writes.
        problems: ``(kind, message)`` pairs: ``import`` (its code does not import) or
            ``pinned`` (its handler is pinned to another stage name).

    Example:
        >>> StageContract.unknown("no handler").writes.unknown
        'no handler'
    """

    reads: ContractSide
    writes: ContractSide
    problems: tuple[tuple[Literal["import", "pinned"], str], ...] = ()

    @classmethod
    def unknown(
        cls, why: str, problems: tuple[tuple[Literal["import", "pinned"], str], ...] = ()
    ) -> StageContract:
        """A contract nothing is known of, and why."""
        side = ContractSide.unknown_because(why)
        return cls(side, side, problems)


# -- structural comparison ------------------------------------------------------------------


@dataclass(frozen=True)
class _Bad:
    path: tuple[str | int, ...]
    example: Any
    reason: str


@dataclass(frozen=True)
class _Unknown:
    reason: str


_OK: Final = None
_Result = _Bad | _Unknown | None

# Keywords that do not change what a schema accepts.
_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$defs",
        "discriminator",
        "contentMediaType",
        "contentEncoding",
        "uniqueItems",  # pydantic sets accept repeats (and drop them)
    }
)
_SAFE_FORMATS = frozenset({"date-time", "date", "time", "duration", "uuid", "binary"})
_KNOWN = frozenset(
    {
        "type",
        "enum",
        "const",
        "anyOf",
        "oneOf",
        "allOf",
        "$ref",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
    }
)
_TYPES = ("null", "boolean", "integer", "number", "string", "array", "object")


def _path_text(path: tuple[str | int, ...]) -> str:
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    return text.lstrip(".") or "<root>"


class _Schemas:
    """Two schema documents, each resolving its own ``$ref``."""

    def __init__(self, writer: Mapping[str, Any], reader: Mapping[str, Any]) -> None:
        self.writer_defs: Mapping[str, Any] = writer.get("$defs", {})
        self.reader_defs: Mapping[str, Any] = reader.get("$defs", {})
        self.writer = writer
        self.reader = reader
        self._assumed: set[tuple[int, int]] = set()

    @staticmethod
    def resolve(node: Any, defs: Mapping[str, Any]) -> dict[str, Any]:
        seen = 0
        while isinstance(node, dict) and "$ref" in node and seen < 64:
            name = str(node["$ref"]).rsplit("/", 1)[-1]
            rest = {k: v for k, v in node.items() if k != "$ref"}
            node = {**defs.get(name, {}), **rest}
            seen += 1
        if isinstance(node, dict) and len(node.get("allOf", ())) == 1:
            inner = node["allOf"][0]
            node = {**{k: v for k, v in node.items() if k != "allOf"}, **inner}
            return _Schemas.resolve(node, defs)
        if node is True or node is None:
            return {}
        if node is False:
            return {"not": {}}
        return dict(node)


def _types(node: Mapping[str, Any]) -> set[str] | None:
    """The JSON types a (resolved, union-free) node allows; None for any."""
    if "const" in node:
        return {_json_type(node["const"])}
    if "enum" in node:
        return {_json_type(v) for v in node["enum"]}
    kind = node.get("type")
    if kind is None:
        return None
    kinds = set(kind) if isinstance(kind, list) else {kind}
    if "number" in kinds:
        kinds.add("integer")
    return kinds


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _union(node: Mapping[str, Any]) -> list[Any] | None:
    branches = node.get("anyOf") or node.get("oneOf")
    if branches:
        return list(branches)
    kind = node.get("type")
    if isinstance(kind, list) and len(kind) > 1 and not ({"const", "enum"} & node.keys()):
        return [{**node, "type": k} for k in kind]
    return None


class _Comparer:
    def __init__(self, writer: Mapping[str, Any], reader: Mapping[str, Any], seed: int) -> None:
        self.s = _Schemas(writer, reader)
        self.gen = _Generator(writer, seed)

    def run(self) -> _Result:
        return self.sub(self.s.writer, self.s.reader, ())

    def wres(self, node: Any) -> dict[str, Any]:
        return _Schemas.resolve(node, self.s.writer_defs)

    def rres(self, node: Any) -> dict[str, Any]:
        return _Schemas.resolve(node, self.s.reader_defs)

    def sub(self, w_raw: Any, r_raw: Any, path: tuple[str | int, ...]) -> _Result:
        key = (id(w_raw), id(r_raw))
        if key in self.s._assumed:  # a recursive model compared with itself: coinduction
            return _OK
        self.s._assumed.add(key)
        try:
            return self._sub(self.wres(w_raw), self.rres(r_raw), path)
        finally:
            self.s._assumed.discard(key)

    def _sub(self, w: dict[str, Any], r: dict[str, Any], path: tuple[str | int, ...]) -> _Result:
        r_keys = set(r) - _ANNOTATIONS
        if not r_keys:
            return _OK  # the reader takes anything
        if "not" in w:
            return _OK  # the writer writes nothing
        w_union = _union(w)
        if w_union is not None:
            unknown: _Unknown | None = None
            base = {k: v for k, v in w.items() if k not in ("anyOf", "oneOf", "type")}
            for branch in w_union:
                merged = {**base, **self.wres(branch)}
                found = self._sub(merged, r, path)
                if isinstance(found, _Bad):
                    return found
                if isinstance(found, _Unknown):
                    unknown = unknown or found
            return unknown
        r_union = _union(r)
        if r_union is not None:
            results = [self._sub(w, self.rres(branch), path) for branch in r_union]
            if any(res is _OK for res in results):
                return _OK
            fitting = [
                res for res, b in zip(results, r_union, strict=True) if _overlaps(w, self.rres(b))
            ]
            if len(fitting) == 1:
                return fitting[0]  # one branch can take the writer's type: it decides
            unknowns = [res for res in results if isinstance(res, _Unknown)]
            if unknowns:
                return unknowns[0]
            if not fitting:
                first = results[0]
                assert isinstance(first, _Bad)
                return _Bad(first.path, first.example, first.reason)
            return _Unknown(f"{_path_text(path)}: a union the structure cannot resolve")
        unknown_keys = r_keys - _KNOWN
        if unknown_keys and any(r.get(k) != w.get(k) for k in unknown_keys):
            return _Unknown(f"{_path_text(path)}: reader keyword {sorted(unknown_keys)[0]!r}")
        if set(w) - _ANNOTATIONS - _KNOWN:
            extra = sorted(set(w) - _ANNOTATIONS - _KNOWN)[0]
            return _Unknown(f"{_path_text(path)}: writer keyword {extra!r}")
        return self._leaf(w, r, path)

    def _example(self, w: dict[str, Any]) -> Any:
        return self.gen.minimal(w)

    def _leaf(self, w: dict[str, Any], r: dict[str, Any], path: tuple[str | int, ...]) -> _Result:
        w_types, r_types = _types(w), _types(r)
        # enums and constants on the writer side: every value must be accepted
        if "const" in w or "enum" in w:
            values = [w["const"]] if "const" in w else list(w["enum"])
            for value in values:
                accepted = _accepts(r, value, self.s.reader_defs)
                if accepted is False:
                    return _Bad(path, value, "the reader does not accept this value")
                if accepted is None:
                    return _Unknown(f"{_path_text(path)}: cannot evaluate {value!r}")
            return _OK
        if w_types is None:  # the writer may write anything
            assert r_types is not None or "const" in r or "enum" in r
            value = _outside(r_types or set())
            return _Bad(path, value, "the writer's value is not constrained (Any)")
        if "const" in r or "enum" in r:
            allowed = [r["const"]] if "const" in r else list(r["enum"])
            value = self.gen.not_in(w, allowed)
            if value is _NOTHING:
                return _Unknown(f"{_path_text(path)}: writer values against an enum")
            return _Bad(path, value, f"the reader accepts only {allowed!r}")
        assert r_types is not None
        missing = w_types - r_types
        if missing:
            kind = sorted(missing, key=_TYPES.index)[0]
            takes = " or ".join(sorted(r_types, key=_TYPES.index))
            example = 0.5 if kind == "number" else self.gen.minimal({**w, "type": kind})
            return _Bad(path, example, f"a {kind} where the reader takes {takes}")
        for kind in sorted(w_types, key=_TYPES.index):
            found = self._typed(kind, w, r, path)
            if found is not _OK:
                return found
        return _OK

    def _typed(
        self, kind: str, w: dict[str, Any], r: dict[str, Any], path: tuple[str | int, ...]
    ) -> _Result:
        if kind in ("integer", "number"):
            return _bounds(w, r, path, kind)
        if kind == "string":
            return self._string(w, r, path)
        if kind == "array":
            return self._array(w, r, path)
        if kind == "object":
            return self._object(w, r, path)
        return _OK

    def _string(self, w: dict[str, Any], r: dict[str, Any], path: tuple[str | int, ...]) -> _Result:
        r_format, w_format = r.get("format"), w.get("format")
        if r_format is not None and r_format != w_format:
            if w_format is None and "pattern" not in w and w.get("minLength", 0) <= 1:
                return _Bad(path, "x", f"any string where the reader takes format {r_format!r}")
            return _Unknown(f"{_path_text(path)}: string format {w_format!r} against {r_format!r}")
        if r_format is not None and r_format not in _SAFE_FORMATS:
            return _Unknown(f"{_path_text(path)}: string format {r_format!r}")
        if "pattern" in r and r.get("pattern") != w.get("pattern"):
            return _Unknown(f"{_path_text(path)}: the reader's pattern {r['pattern']!r}")
        w_min, r_min = w.get("minLength", 0), r.get("minLength", 0)
        w_max, r_max = w.get("maxLength"), r.get("maxLength")
        plain = "pattern" not in w and w_format is None
        if w_min < r_min:
            if plain:
                return _Bad(path, "x" * w_min, f"shorter than the reader's minLength {r_min}")
            return _Unknown(f"{_path_text(path)}: minLength")
        if r_max is not None and (w_max is None or w_max > r_max):
            if plain:
                return _Bad(path, "x" * (r_max + 1), f"longer than the reader's maxLength {r_max}")
            return _Unknown(f"{_path_text(path)}: maxLength")
        return _OK

    def _array(self, w: dict[str, Any], r: dict[str, Any], path: tuple[str | int, ...]) -> _Result:
        if "prefixItems" in w or "prefixItems" in r:
            w_prefix, r_prefix = w.get("prefixItems"), r.get("prefixItems")
            if (
                w_prefix is None
                or r_prefix is None
                or len(w_prefix) != len(r_prefix)
                or "items" in w
                or "items" in r
            ):
                return _Unknown(f"{_path_text(path)}: tuples")
            for index, (wi, ri) in enumerate(zip(w_prefix, r_prefix, strict=True)):
                found = self.sub(wi, ri, (*path, index))
                if isinstance(found, _Bad):
                    items = [self._example(self.wres(x)) for x in w_prefix]
                    items[index] = found.example
                    return _Bad(found.path, items, found.reason)
                if found is not _OK:
                    return found
            return _OK
        w_min, r_min = w.get("minItems", 0), r.get("minItems", 0)
        w_max, r_max = w.get("maxItems"), r.get("maxItems")
        w_items = w.get("items", {})
        if w_min < r_min:
            return _Bad(
                path, [self._example(self.wres(w_items))] * w_min, f"fewer than {r_min} items"
            )
        if r_max is not None and (w_max is None or w_max > r_max):
            return _Bad(
                path,
                [self._example(self.wres(w_items))] * (r_max + 1),
                f"more than {r_max} items",
            )
        found = self.sub(w_items, r.get("items", {}), (*path, 0))
        if isinstance(found, _Bad):
            return _Bad(found.path, [found.example] * max(w_min, 1), found.reason)
        return found

    def _object(self, w: dict[str, Any], r: dict[str, Any], path: tuple[str | int, ...]) -> _Result:
        w_props: dict[str, Any] = w.get("properties", {})
        r_props: dict[str, Any] = r.get("properties", {})
        w_required = set(w.get("required", ()))
        r_required = set(r.get("required", ()))
        w_extra = w.get("additionalProperties", not w_props)  # a bare object: any keys
        r_extra = r.get("additionalProperties", True)

        def whole(name: str, value: Any) -> Any:
            example = self.gen.minimal(w)
            if not isinstance(example, dict):
                example = {}
            if value is _NOTHING:
                example.pop(name, None)
            else:
                example[name] = value
            return example

        unknown: _Unknown | None = None
        # 1. what the reader requires must always be written
        for name in r_props if r_props else sorted(r_required):
            if name not in r_required:
                continue
            if name not in w_required:
                reason = (
                    "the writer may leave this field out"
                    if name in w_props or w_extra is not False
                    else "the writer has no such field"
                )
                return _Bad(
                    (*path, name), whole(name, _NOTHING), f"required by the reader; {reason}"
                )
        # 2. every field the writer writes must fit the reader's field or extras
        for name, w_field in w_props.items():
            if name in r_props:
                target: Any = r_props[name]
            elif r_extra is False:
                return _Bad(
                    (*path, name),
                    whole(name, self._example(self.wres(w_field))),
                    "the reader forbids fields it does not declare (extra='forbid')",
                )
            else:
                target = r_extra if isinstance(r_extra, dict) else {}
            found = self.sub(w_field, target, (*path, name))
            if isinstance(found, _Bad):
                return _Bad(found.path, whole(name, found.example), found.reason)
            if isinstance(found, _Unknown):
                unknown = unknown or found
        # 3. keys the writer may add beyond its declared fields
        if w_extra is not False:
            extra_schema = w_extra if isinstance(w_extra, dict) else {}
            if r_extra is False:
                return _Bad(
                    (*path, "<extra field>"),
                    whole("extra", self._example(self.wres(extra_schema))),
                    "the writer may add fields the reader forbids (extra='forbid')",
                )
            targets = [r_extra if isinstance(r_extra, dict) else {}]
            targets += [p for n, p in r_props.items() if n not in w_props]
            for target in targets:
                found = self.sub(extra_schema, target, (*path, "<key>"))
                if isinstance(found, _Bad):
                    key = next((n for n, p in r_props.items() if p is target), None)
                    where = (*path, key) if key is not None else found.path
                    return _Bad(where, whole(key or "key", found.example), found.reason)
                if isinstance(found, _Unknown):
                    unknown = unknown or found
        return unknown


def _bounds(
    w: dict[str, Any], r: dict[str, Any], path: tuple[str | int, ...], kind: str
) -> _Result:
    step = 1 if kind == "integer" else 0.5
    r_lo = r.get("minimum", r.get("exclusiveMinimum"))
    r_hi = r.get("maximum", r.get("exclusiveMaximum"))
    w_lo = w.get("minimum", w.get("exclusiveMinimum"))
    w_hi = w.get("maximum", w.get("exclusiveMaximum"))
    if "multipleOf" in r or "multipleOf" in w:
        return _Unknown(f"{_path_text(path)}: multipleOf")
    if r_lo is not None:
        if w_lo is None:
            value = r_lo - step if "exclusiveMinimum" not in r else r_lo
            return _Bad(path, _num(value, kind), f"below the reader's minimum {r_lo}")
        if w_lo < r_lo or (w_lo == r_lo and "exclusiveMinimum" in r and "minimum" in w):
            return _Unknown(f"{_path_text(path)}: lower bounds")
    if r_hi is not None:
        if w_hi is None:
            value = r_hi + step if "exclusiveMaximum" not in r else r_hi
            return _Bad(path, _num(value, kind), f"above the reader's maximum {r_hi}")
        if w_hi > r_hi or (w_hi == r_hi and "exclusiveMaximum" in r and "maximum" in w):
            return _Unknown(f"{_path_text(path)}: upper bounds")
    return _OK


def _num(value: float, kind: str) -> float | int:
    return math.floor(value) if kind == "integer" else float(value)


def _overlaps(w: Mapping[str, Any], r: Mapping[str, Any]) -> bool:
    w_types, r_types = _types(w), _types(r)
    return w_types is None or r_types is None or bool(w_types & r_types)


def _outside(types: set[str]) -> Any:
    for kind, value in (("null", None), ("string", "x"), ("integer", 0), ("object", {})):
        if kind not in types:
            return value
    return []


def _accepts(node: Any, value: Any, defs: Mapping[str, Any], depth: int = 0) -> bool | None:
    """Whether a schema accepts a JSON value: True, False, or None when it cannot tell."""
    r = _Schemas.resolve(node, defs)
    if depth > 32:
        return None
    keys = set(r) - _ANNOTATIONS
    if not keys:
        return True
    branches = _union(r)
    if branches is not None:
        answers = [_accepts(b, value, defs, depth + 1) for b in branches]
        if any(a is True for a in answers):
            return True
        return None if any(a is None for a in answers) else False
    if keys - _KNOWN:
        return None
    if "const" in r:
        return value == r["const"] and _json_type(value) == _json_type(r["const"])
    if "enum" in r:
        return any(value == v and _json_type(value) == _json_type(v) for v in r["enum"])
    types = _types(r)
    kind = _json_type(value)
    if types is not None and kind not in types:
        return False
    if kind in ("integer", "number"):
        if "minimum" in r and value < r["minimum"]:
            return False
        if "maximum" in r and value > r["maximum"]:
            return False
        if "exclusiveMinimum" in r and value <= r["exclusiveMinimum"]:
            return False
        return not ("exclusiveMaximum" in r and value >= r["exclusiveMaximum"])
    if kind == "string":
        if "format" in r:
            return None
        if len(value) < r.get("minLength", 0) or len(value) > r.get("maxLength", len(value)):
            return False
        if "pattern" in r:
            return re.search(r["pattern"], value) is not None
        return True
    if kind == "array":
        if len(value) < r.get("minItems", 0) or len(value) > r.get("maxItems", len(value)):
            return False
        answers = [_accepts(r.get("items", {}), v, defs, depth + 1) for v in value]
        return False if False in answers else (None if None in answers else True)
    if kind == "object":
        if not set(r.get("required", ())) <= value.keys():
            return False
        props = r.get("properties", {})
        extra = r.get("additionalProperties", True)
        answers = []
        for name, item in value.items():
            if name in props:
                answers.append(_accepts(props[name], item, defs, depth + 1))
            elif extra is False:
                return False
            elif isinstance(extra, dict):
                answers.append(_accepts(extra, item, defs, depth + 1))
        return False if False in answers else (None if None in answers else True)
    return True


# -- generation -------------------------------------------------------------------------------

_FORMATS: dict[str, list[str]] = {
    "date-time": ["2000-01-01T00:00:00Z", "1970-01-01T00:00:00+01:00", "2038-01-19T03:14:07.5Z"],
    "date": ["2000-01-01", "1970-01-01", "2038-12-31"],
    "time": ["00:00:00", "23:59:59.5"],
    "duration": ["PT0S", "P1D", "PT1.5S"],
    "uuid": ["00000000-0000-4000-8000-000000000000", "12345678-1234-5678-1234-567812345678"],
    "email": ["a@example.com", "first.last@example.org"],
    "uri": ["http://a.example/", "https://example.com/x?y=1"],
    "ipv4": ["127.0.0.1", "10.0.0.255"],
    "ipv6": ["::1", "fe80::1"],
}
_STRINGS = ["", "a", "0", "1.5", "true", "null", "A b", "é", "x" * 12]
_INTS = [0, 1, -1, 2, 10, -10, 255, 2**31, -(2**31) - 1, 2**53 + 1]
_FLOATS = [0.0, 0.5, -1.5, 1.0, 1e-7, 1e21, -2.5e300]
_MAX_DEPTH = 8


class _Generator:
    """Values of a JSON Schema: the smallest first (size 0), then larger ones (seeded)."""

    def __init__(self, root: Mapping[str, Any], seed: int = 0) -> None:
        self.defs: Mapping[str, Any] = root.get("$defs", {})
        self.root = root
        self.rng = random.Random(seed)
        self._resolved: dict[int, dict[str, Any]] = {}
        self._keep: list[Any] = []

    def minimal(self, node: Any) -> Any:
        saved = self.rng
        self.rng = random.Random(0)
        try:
            return self.value(node, size=0, depth=0)
        finally:
            self.rng = saved

    def values(self, budget: int) -> Iterator[Any]:
        """``budget`` values of the root schema, sizes growing from 0."""
        for index in range(budget):
            size = 0 if index == 0 else 1 + (index * 8) // max(budget, 1)
            yield self.value(self.root, size=size, depth=0)

    def not_in(self, w: Mapping[str, Any], allowed: list[Any]) -> Any:
        for _ in range(64):
            value = self.value(w, size=1, depth=0)
            if not any(value == a and _json_type(value) == _json_type(a) for a in allowed):
                return value
        return _NOTHING

    def _pick(self, options: list[Any], size: int) -> Any:
        if size == 0 or not options:
            return options[0] if options else None
        return options[self.rng.randrange(min(len(options), 2 + size * 2))]

    def _resolve(self, node: Any) -> dict[str, Any]:
        key = id(node)
        found = self._resolved.get(key)
        if found is None:
            found = self._resolved[key] = _Schemas.resolve(node, self.defs)
            self._keep.append(node)  # ids stay valid while the node lives
        return found

    def value(self, node: Any, *, size: int, depth: int) -> Any:
        n = self._resolve(node)
        if "const" in n:
            return n["const"]
        if "enum" in n:
            return self._pick(list(n["enum"]), size)
        branches = _union(n)
        if branches is not None:
            base = {k: v for k, v in n.items() if k not in ("anyOf", "oneOf", "type")}
            pick = branches[0] if size == 0 else self.rng.choice(branches)
            return self.value({**base, **_Schemas.resolve(pick, self.defs)}, size=size, depth=depth)
        kind = n.get("type")
        if kind is None:
            return self._pick([None, 0, "", True, 1.5, [], {}], size)
        if depth > _MAX_DEPTH and kind in ("array", "object"):
            return [] if kind == "array" else {}
        maker: Callable[[dict[str, Any], int, int], Any] = getattr(self, f"_{kind}")
        return maker(n, size, depth)

    def _null(self, n: dict[str, Any], size: int, depth: int) -> Any:
        return None

    def _boolean(self, n: dict[str, Any], size: int, depth: int) -> Any:
        return self._pick([False, True], size)

    def _numbers(self, n: dict[str, Any], candidates: list[Any], integer: bool) -> list[Any]:
        lo = n.get("minimum", n.get("exclusiveMinimum"))
        hi = n.get("maximum", n.get("exclusiveMaximum"))
        edges: list[Any] = []
        if lo is not None:
            edges.append(lo + (1 if integer else 0.5) if "exclusiveMinimum" in n else lo)
        if hi is not None:
            edges.append(hi - (1 if integer else 0.5) if "exclusiveMaximum" in n else hi)
        fits = [
            v for v in [*candidates, *edges] if (lo is None or v >= lo) and (hi is None or v <= hi)
        ]
        if "multipleOf" in n:
            fits = [v for v in fits if (v / n["multipleOf"]) == int(v / n["multipleOf"])]
        return [int(v) if integer else v for v in (fits or edges or candidates)]

    def _integer(self, n: dict[str, Any], size: int, depth: int) -> Any:
        return self._pick(self._numbers(n, _INTS, integer=True), size)

    def _number(self, n: dict[str, Any], size: int, depth: int) -> Any:
        return self._pick(self._numbers(n, _FLOATS + _INTS[:4], integer=False), size)

    def _string(self, n: dict[str, Any], size: int, depth: int) -> Any:
        options = list(_FORMATS.get(n.get("format", ""), _STRINGS))
        lo, hi = n.get("minLength", 0), n.get("maxLength")
        options = [s.ljust(lo, "x") for s in options]
        if hi is not None:
            options = [s[:hi] for s in options]
        if "pattern" in n:
            pattern = re.compile(n["pattern"])
            options = [s for s in options if pattern.search(s)] or options
        return self._pick(options, size)

    def _array(self, n: dict[str, Any], size: int, depth: int) -> Any:
        if "prefixItems" in n:
            return [self.value(p, size=size, depth=depth + 1) for p in n["prefixItems"]]
        lo, hi = n.get("minItems", 0), n.get("maxItems")
        count = lo if size == 0 else self.rng.randint(lo, max(lo, min(size, 3)))
        if hi is not None:
            count = min(count, hi)
        return [self.value(n.get("items", {}), size=size, depth=depth + 1) for _ in range(count)]

    def _object(self, n: dict[str, Any], size: int, depth: int) -> Any:
        props: dict[str, Any] = n.get("properties", {})
        required = set(n.get("required", ()))
        result: dict[str, Any] = {}
        for name, item in props.items():
            if name in required or (size > 0 and self.rng.random() < 0.5):
                result[name] = self.value(item, size=size, depth=depth + 1)
        extra = n.get("additionalProperties")
        if size > 0 and extra is not False and (extra is not None or not props):
            for index in range(self.rng.randint(0, 2)):
                result[f"k{index}"] = self.value(
                    extra if isinstance(extra, dict) else {}, size=size, depth=depth + 1
                )
        return result


# -- the two methods together -----------------------------------------------------------------


@dataclass
class _Sides:
    writer_schema: dict[str, Any]
    reader_schema: dict[str, Any]
    write: Callable[[Any], bytes] | None  # a value the writer takes -> the bytes it writes
    read: Callable[[bytes], None] | None  # raises ValidationError when the reader refuses
    writer_inputs: dict[str, Any] | None = None  # the schema of what `write` takes
    opaque: list[str] = field(default_factory=list)  # why the structure cannot be trusted


def _refusal(read: Callable[[bytes], None], text: bytes) -> ValidationError | None:
    try:
        read(text)
    except ValidationError as exc:
        return exc
    return None


def _first_error(exc: ValidationError) -> tuple[str, str]:
    error = exc.errors(include_input=False, include_url=False)[0]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
    return loc.lstrip(".") or "<root>", f"{error['msg']} ({error['type']})"


def compare_schemas(
    writer: dict[str, Any],
    reader: dict[str, Any],
    *,
    write: Callable[[Any], bytes] | None = None,
    read: Callable[[bytes], None] | None = None,
    writer_inputs: dict[str, Any] | None = None,
    opaque: list[str] | None = None,
    budget: int = DEFAULT_BUDGET,
    seed: int = 0,
) -> Compatibility:
    """Decide whether every value of ``writer`` is accepted by ``reader``.

    Args:
        writer: The JSON Schema of what is written.
        reader: The JSON Schema of what is read.
        write: Turns a value of ``writer_inputs`` into the bytes the writer writes (raises
            ``ValidationError`` for a value the writer refuses). Default: ``orjson.dumps`` of
            values of ``writer``.
        read: Validates the written bytes the way the reader does (raises
            ``ValidationError``). Without it, INCOMPATIBLE verdicts are structural only and
            undecided cases are UNCHECKED.
        writer_inputs: The schema values for ``write`` are generated from.
        opaque: Reasons the structure alone cannot prove compatibility (validators, custom
            serializers): then OK needs the property-based method.
        budget: Examples the property-based method tries.
        seed: Seeds the generator (the same seed, the same examples).

    Example:
        >>> compare_schemas({"type": "integer"}, {"type": "number"}).verdict
        'OK'
        >>> compare_schemas({"type": "number"}, {"type": "integer"}).example
        0.5
    """
    found = _Comparer(writer, reader, seed).run()
    reasons = list(opaque or ())
    if isinstance(found, _Bad):
        text = orjson.dumps(found.example)
        if read is None:
            return Compatibility(
                "INCOMPATIBLE", "structural", _path_text(found.path), found.example, found.reason
            )
        written = _write_back(write, text)
        if written is not None:
            refusal = _refusal(read, written)
            if refusal is not None:
                return Compatibility(
                    "INCOMPATIBLE",
                    "structural",
                    _path_text(found.path),
                    orjson.loads(written),
                    _first_error(refusal)[1],
                )
        reasons.append(f"{_path_text(found.path)}: a structural mismatch pydantic does not confirm")
    elif isinstance(found, _Unknown):
        reasons.append(found.reason)
    if not reasons:
        return Compatibility("OK", "structural")
    if read is None:
        return Compatibility("UNCHECKED", "structural", reason="; ".join(reasons))
    return _property(
        writer_inputs or writer, write, read, budget=budget, seed=seed, why="; ".join(reasons)
    )


def _write_back(write: Callable[[Any], bytes] | None, text: bytes) -> bytes | None:
    """What the writer writes for the example (None when the writer could not write it)."""
    if write is None:
        return text
    try:
        return write(orjson.loads(text))
    except (ValidationError, ValueError, TypeError):
        return None


def _property(
    inputs: dict[str, Any],
    write: Callable[[Any], bytes] | None,
    read: Callable[[bytes], None],
    *,
    budget: int,
    seed: int,
    why: str,
) -> Compatibility:
    generator = _Generator(inputs, seed)
    tried = 0
    for value in generator.values(budget):
        try:
            text = write(value) if write is not None else orjson.dumps(value)
        except (ValidationError, ValueError, TypeError):
            continue  # the writer would not write it: not an example
        tried += 1
        refusal = _refusal(read, text)
        if refusal is not None:
            where, message = _first_error(refusal)
            return Compatibility(
                "INCOMPATIBLE", "property", where, orjson.loads(text), message, examples=tried
            )
    if tried == 0:
        return Compatibility(
            "UNCHECKED",
            "property",
            reason=f"no generated value satisfies the writer's model ({why})",
        )
    return Compatibility("OK", "property", reason=why, examples=tried)

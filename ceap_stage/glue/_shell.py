"""The Python-shell variant: read and write records through the stores, without Spark.

For small Glue scripts that need no Spark (``glue_job(spark=False)``): the input is read into
Python values the way a Lambda stage reads it, and the output is written the way the Spark side
writes it (JSON Lines parts under a fresh attempt prefix, then the manifest). Such a script is
deployed as a Spark job that never starts Spark; Glue's own "Python shell" job type offers
Python 3.9 at most, below what ceap-stage needs (3.11).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel

from ceap_stage._errors import InputNotFoundError, InputValidationError, OutputValidationError
from ceap_stage._formats import Format, Manifest, encode_jsonl
from ceap_stage._io import OutputRef, PartWriter, StageIO
from ceap_stage._store import Store

from ._args import GlueArgs
from ._output import GlueOutput, commit_manifest, default_store, new_attempt_id, output_ref

__all__ = ["fetch_input", "read_input_value", "read_records", "write_records"]


def fetch_input(args: GlueArgs, store: Store) -> tuple[Format, Any, dict[str, str]]:
    """Read and decode ``output.json`` of the previous stage; shared by the Spark side.

    Returns the format, the decoded value (a :class:`Manifest` whose parts are checked to lie
    under the previous stage's parts prefix, but not yet read) and the error facts.

    Raises:
        InputNotFoundError: The previous stage wrote no ``output.json``.
        InputValidationError: The input is not valid JSON / JSON Lines / manifest.
    """
    facts = args.error_facts()
    try:
        fmt, value = StageIO(store).open(
            input_ref(args), missing=f"the stage {args.input_stage!r} has no output"
        )
    except (InputValidationError, InputNotFoundError) as exc:
        exc.add_context(**facts)
        raise
    return fmt, value, facts


def input_ref(args: GlueArgs) -> OutputRef:
    """The output a job reads (the previous stage's, or the ``initial`` pseudo-stage's)."""
    return OutputRef(args.input_bucket, args.execution_id, args.input_stage)


def read_input_value(args: GlueArgs, *, store: Store | None = None) -> Any:
    """Read the previous stage's output as Python values, whatever its format.

    A JSON document is returned as it is (object or array); JSON Lines and a manifest's parts
    (read in manifest order, sizes and record count checked) as a list of records.

    Raises:
        InputNotFoundError: The previous stage wrote no ``output.json``.
        InputValidationError: The input is not valid JSON / JSON Lines / manifest.

    Example:
        >>> value = read_input_value(args)  # doctest: +SKIP
    """
    store = store or default_store()
    _fmt, value, facts = fetch_input(args, store)
    if isinstance(value, Manifest):
        try:
            value = StageIO(store).read_manifest_parts(input_ref(args), value)
        except InputValidationError as exc:
            exc.add_context(**facts)
            raise
    return value


def read_records(args: GlueArgs, *, store: Store | None = None) -> list[Any]:
    """Read the previous stage's output as a list of records.

    Raises:
        InputNotFoundError: The previous stage wrote no ``output.json``.
        InputValidationError: The input is invalid, or is one JSON value that is not an array
            (a single object is never wrapped into a list).

    Example:
        >>> records = read_records(args)  # doctest: +SKIP
    """
    value = read_input_value(args, store=store)
    if not isinstance(value, list):
        raise InputValidationError(
            f"the input is a single JSON {type(value).__name__}, not a list of records",
            **args.error_facts(),
        )
    return value


def _plain(records: Iterable[Any]) -> Iterator[Any]:
    for record in records:
        yield (
            record.model_dump(mode="json", by_alias=True)
            if isinstance(record, BaseModel)
            else record
        )


def write_records(
    records: Iterable[Any],
    args: GlueArgs,
    *,
    store: Store | None = None,
    records_per_part: int = 100_000,
) -> GlueOutput:
    """Write records as JSON Lines parts and then the manifest, like the Spark writer.

    Args:
        records: JSON-ready values or pydantic models, in output order (consumed once).
        args: The job's arguments (:func:`resolve_args`).
        store: Where to write (default: ``CEAP_STORE``, else S3).
        records_per_part: Records per part file.

    Returns:
        The manifest's location, the record count and the parts.

    Raises:
        OutputValidationError: A record cannot be serialised as JSON.
        StorageError: The store refused a part or the manifest.

    Example:
        >>> out = write_records([{"customer_id": "c-1", "events": 3}], args)  # doctest: +SKIP
    """
    if records_per_part < 1:
        raise ValueError("records_per_part must be at least 1")
    target = store or default_store()
    attempt = new_attempt_id()
    writer = PartWriter(target, output_ref(args), part_bytes=1 << 62, writer=attempt)
    count = 0
    chunk: list[Any] = []

    def flush() -> None:
        try:
            body = encode_jsonl(chunk)
        except TypeError as exc:  # orjson.JSONEncodeError
            raise OutputValidationError(
                f"a record cannot be serialised as JSON ({type(exc).__name__})",
                **args.error_facts("output"),
            ) from None
        writer.add(body)
        writer.flush()
        chunk.clear()

    for record in _plain(records):
        chunk.append(record)
        count += 1
        if len(chunk) >= records_per_part:
            flush()
    if chunk:
        flush()
    return commit_manifest(target, args, attempt, writer.parts, count)

"""docs/contract.md section 3: the three formats of output.json, by Content-Type and by sniffing."""

from __future__ import annotations

import codecs

import orjson
import pytest

from ceap_stage import InputValidationError
from ceap_stage._formats import (
    JSON,
    JSONL,
    MANIFEST,
    Manifest,
    ManifestPart,
    decode,
    encode_jsonl,
    format_of_content_type,
    iter_jsonl,
)

SECRET = "s3cr3t-payload-value"
PREFIX = "executions/run-1/Glue/parts/"


@pytest.mark.parametrize(
    ("content_type", "fmt"),
    [
        (JSON, "json"),
        (JSONL, "jsonl"),
        (MANIFEST, "manifest"),
        ("application/json; charset=utf-8", "json"),
        ("Application/X-NDJSON", "jsonl"),
        ("binary/octet-stream", None),
        ("text/plain", None),
        ("", None),
        (None, None),
    ],
)
def test_format_of_content_type(content_type, fmt):
    assert format_of_content_type(content_type) == fmt


# -- by Content-Type ----------------------------------------------------------------------------


def test_json_document_by_content_type():
    assert decode(b'{"a": 1}', JSON) == ("json", {"a": 1})
    assert decode(b"[1, 2]", JSON) == ("json", [1, 2])


def test_json_lines_by_content_type_even_with_one_record():
    assert decode(b'{"a": 1}\n', JSONL) == ("jsonl", [{"a": 1}])
    assert decode(b'{"a": 1}\n\n{"a": 2}\r\n', JSONL) == ("jsonl", [{"a": 1}, {"a": 2}])
    assert decode(b"", JSONL) == ("jsonl", [])


def test_manifest_by_content_type():
    body = orjson.dumps(
        {
            "ceap": "manifest/1",
            "format": "jsonl",
            "records": 3,
            "parts": [{"key": PREFIX + "part-0.jsonl", "bytes": 10}],
        }
    )
    fmt, value = decode(body, MANIFEST)
    assert fmt == "manifest"
    assert value == Manifest(records=3, parts=(ManifestPart(PREFIX + "part-0.jsonl", 10),))
    assert value.total_bytes == 10


# -- by sniffing (no or another Content-Type) ---------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "binary/octet-stream"])
def test_sniffing(content_type):
    manifest = Manifest(records=0, parts=()).to_bytes()
    assert decode(manifest, content_type)[0] == "manifest"
    assert decode(b'{"a": 1}', content_type) == ("json", {"a": 1})
    assert decode(b"[1, 2]", content_type) == ("json", [1, 2])
    assert decode(b'{"a": 1}\n{"a": 2}\n', content_type) == ("jsonl", [{"a": 1}, {"a": 2}])
    assert decode(b"", content_type) == ("jsonl", [])
    assert decode(b"  \n", content_type) == ("jsonl", [])


def test_a_json_object_with_another_ceap_value_is_a_document():
    assert decode(b'{"ceap": "something-else"}', None) == ("json", {"ceap": "something-else"})


def test_a_single_json_lines_record_without_content_type_is_a_document():
    # The contract: text that parses as one JSON value is a document (never wrapped in a list).
    assert decode(b'{"a": 1}\n', None) == ("json", {"a": 1})


# -- invalid input: InputValidationError without payload content --------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "match"),
    [
        (b'{"secret": "' + SECRET.encode() + b'"', JSON, "the json document is not valid JSON"),
        (SECRET.encode(), MANIFEST, "the manifest document is not valid JSON"),
        (codecs.BOM_UTF8 + b"[1]", JSON, "byte order mark"),
        (b'["\xff\xfe' + SECRET.encode() + b'"]', JSON, "not valid UTF-8"),
        (b'{"a": 1}\n' + SECRET.encode() + b"\n", JSONL, "JSON Lines line 2 is not valid JSON"),
        (b'{"a": 1}\n{"a": 2}\n' + SECRET.encode(), None, "JSON Lines line 3 is not valid JSON"),
        (b"\xff" + SECRET.encode(), None, "not valid UTF-8"),
    ],
)
def test_invalid_bodies_are_refused_without_echoing_them(body, content_type, match):
    with pytest.raises(InputValidationError, match=match) as info:
        decode(body, content_type)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("manifest", "match"),
    [
        ({"ceap": "manifest/2", "records": 0, "parts": []}, "not a 'manifest/1' object"),
        ({"ceap": "manifest/1", "format": "parquet", "records": 0, "parts": []}, "other than"),
        ({"ceap": "manifest/1", "records": -1, "parts": []}, "'records' is not"),
        ({"ceap": "manifest/1", "records": True, "parts": []}, "'records' is not"),
        ({"ceap": "manifest/1", "records": "3", "parts": []}, "'records' is not"),
        ({"ceap": "manifest/1", "records": 0, "parts": {}}, "'parts' is not a list"),
        ({"ceap": "manifest/1", "records": 0, "parts": ["k"]}, "part 0 needs"),
        ({"ceap": "manifest/1", "records": 0, "parts": [{"key": "k"}]}, "part 0 needs"),
        (
            {"ceap": "manifest/1", "records": 0, "parts": [{"key": 3, "bytes": 1}]},
            "part 0 needs",
        ),
        (
            {"ceap": "manifest/1", "records": 0, "parts": [{"key": "k", "bytes": -1}]},
            "part 0 needs",
        ),
    ],
)
def test_malformed_manifests_are_refused(manifest, match):
    with pytest.raises(InputValidationError, match=match):
        decode(orjson.dumps(manifest), MANIFEST)


def test_a_manifest_content_type_on_a_non_manifest_is_refused():
    with pytest.raises(InputValidationError, match="not a 'manifest/1' object"):
        decode(b"[1, 2]", MANIFEST)


@pytest.mark.parametrize(
    "key",
    [
        "executions/run-1/Other/parts/part-0.jsonl",
        "executions/run-2/Glue/parts/part-0.jsonl",
        PREFIX + "../../Other/output.json",
        PREFIX + "./part-0.jsonl",
        PREFIX + "a//b",
        PREFIX,
        "elsewhere",
    ],
)
def test_manifest_parts_must_stay_under_the_stage_prefix(key):
    manifest = Manifest(records=1, parts=(ManifestPart(key, 1),))
    with pytest.raises(InputValidationError, match="points outside"):
        manifest.check_parts_under(PREFIX)


def test_manifest_parts_under_the_prefix_are_accepted():
    manifest = Manifest(
        records=1,
        parts=(ManifestPart(PREFIX + "part-0.jsonl", 1), ManifestPart(PREFIX + "d=1/p.jsonl", 2)),
    )
    manifest.check_parts_under(PREFIX)


def test_manifest_round_trip_and_shape():
    manifest = Manifest(records=4, parts=(ManifestPart(PREFIX + "part-0.jsonl", 12),))
    assert orjson.loads(manifest.to_bytes()) == {
        "ceap": "manifest/1",
        "format": "jsonl",
        "records": 4,
        "parts": [{"key": PREFIX + "part-0.jsonl", "bytes": 12}],
    }
    assert Manifest.from_value(orjson.loads(manifest.to_bytes())) == manifest


def test_encode_and_iter_json_lines():
    records = [{"a": 1}, [1, "x"], "text\nwith newline", None, 2.5]
    body = encode_jsonl(records)
    assert body.count(b"\n") == len(records)
    assert list(iter_jsonl(body.split(b"\n"))) == records
    assert encode_jsonl([]) == b""

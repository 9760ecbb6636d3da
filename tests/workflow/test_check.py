"""The contract check: model pairs with their verdicts, workflows, Glue declarations, drift."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from ceap_stage import InputValidationError, LocalStore
from ceap_stage._models import FINGERPRINT_KEY, drift, schema_fingerprint
from ceap_stage.testing import run_stage
from ceap_stage.workflow import (
    GlueStep,
    LambdaStep,
    LoadedWorkflow,
    WorkflowConfiguration,
    WorkflowType,
    check_workflow,
    load_workflow,
)
from ceap_stage.workflow._check import compare_models
from ceap_stage.workflow._spark_schema import parse_ddl, read_glue_declarations

from . import check_models as m

ROOT = Path(__file__).resolve().parents[2]
H = "tests.workflow.check_models"


@pytest.mark.parametrize(
    ("writer", "reader", "verdict", "field", "example"),
    [
        (m.Order, m.Order, "OK", None, None),
        (list[m.Order], list[m.Order], "OK", None, None),
        # missing required field
        (
            list[m.Order],
            list[m.OrderWithTotal],
            "INCOMPATIBLE",
            "[0].total_amount",
            [{"order_id": "", "quantity": 0}],
        ),
        # narrower and wider types
        (m.Order, m.OrderFloat, "OK", None, None),
        (m.OrderFloat, m.Order, "INCOMPATIBLE", "quantity", {"order_id": "", "quantity": 0.5}),
        (m.OrderText, m.Order, "INCOMPATIBLE", "quantity", None),
        (m.Order, m.OrderText, "INCOMPATIBLE", "quantity", {"order_id": "", "quantity": 0}),
        # extra="forbid"
        (m.Order, m.StrictOrderId, "INCOMPATIBLE", "quantity", {"order_id": "", "quantity": 0}),
        (m.StrictOrderId, m.StrictOrderId, "OK", None, None),
        # aliases: written by alias, read by alias
        (m.Order, m.AliasedOrder, "INCOMPATIBLE", "orderId", None),
        (m.AliasedOrder, m.AliasedOrder, "OK", None, None),
        (m.AliasedOrder, m.Order, "INCOMPATIBLE", "order_id", {"orderId": "", "quantity": 0}),
        # list vs single object, streamed outputs
        (list[m.Order], m.Order, "INCOMPATIBLE", "<root>", []),
        (m.Order, list[m.Order], "INCOMPATIBLE", "<root>", None),
        (Iterable[m.Order], list[m.Order], "OK", None, None),
        (list[m.Order], Iterable[m.Order], "OK", None, None),
        # optional vs required
        (m.MaybeQuantity, m.Order, "INCOMPATIBLE", "quantity", {"order_id": "", "quantity": None}),
        (m.Order, m.MaybeQuantity, "OK", None, None),
        (m.DefaultQuantity, m.Order, "OK", None, None),  # a default is always written
        # nested models
        (m.Basket, m.BasketFloat, "OK", None, None),
        (m.BasketFloat, m.Basket, "INCOMPATIBLE", "order.quantity", None),
        (m.Basket, m.BasketWithTotal, "INCOMPATIBLE", "order.total_amount", None),
        # enums and literals
        (m.Shipped, m.AnyStatus, "OK", None, None),
        (m.AnyStatus, m.Shipped, "INCOMPATIBLE", "status", {"status": "pending"}),
        (m.StatusText, m.AnyStatus, "INCOMPATIBLE", "status", None),
        (m.AnyStatus, m.StatusText, "OK", None, None),
        # ranges
        (m.Order, m.PositiveQuantity, "INCOMPATIBLE", "quantity", {"order_id": "", "quantity": -1}),
        (m.PositiveQuantity, m.Order, "OK", None, None),
        # Any and dicts
        (dict[str, Any], m.Order, "INCOMPATIBLE", "order_id", {}),
        (list[m.Order], list[dict[str, Any]], "OK", None, None),
    ],
)
def test_model_pairs_get_their_verdict(writer, reader, verdict, field, example):
    result = compare_models(writer, reader)
    assert result.verdict == verdict, result.line()
    assert result.field == field
    if verdict == "INCOMPATIBLE":
        assert result.example is not None
        # the example is what the writer writes, and the reader refuses it
        if example is not None:
            assert json.loads(result.example) == example
        assert result.detail
    else:
        assert result.example is None


def test_validators_are_checked_with_generated_values_and_a_minimal_counterexample():
    result = compare_models(m.Order, m.EvenQuantity)
    assert (result.verdict, result.method, result.field) == ("INCOMPATIBLE", "property", "quantity")
    example = json.loads(result.example or "")
    assert example["order_id"] == ""
    assert abs(example["quantity"]) == 1
    assert "even" in result.detail
    assert 1 <= result.examples <= 200


def test_a_property_check_that_finds_nothing_says_ok_by_that_method_and_how_many():
    result = compare_models(m.Order, m.Order)
    assert result.method == "structural"
    even = compare_models(m.EvenQuantity, m.EvenQuantity)
    assert (even.verdict, even.method) == ("OK", "property")
    assert even.examples > 10
    assert "validators" in even.detail


def test_the_same_seed_gives_the_same_verdicts():
    first = [compare_models(m.Order, m.EvenQuantity, seed=s).example for s in (1, 1, 2)]
    assert first[0] == first[1]


def test_the_example_workflows_check_clean():
    for name in ("workflow.py", "workflow.yaml", "workflow_standard.py"):
        report = check_workflow(load_workflow(ROOT / "examples/engagement" / name))
        assert report.ok, report.lines()
        assert [e.verdict for e in report.edges] == ["OK"] * 5, report.lines()
        assert report.edges[0].method == "shape"


def test_a_stage_that_cannot_read_the_previous_output_is_incompatible():
    report = check_workflow(load_workflow(ROOT / "tests/workflow/broken_engagement.py"))
    assert not report.ok
    [bad] = report.incompatible
    assert (bad.writer, bad.reader, bad.field) == ("ScoreStage", "ReportStage", "[0].total_amount")
    assert bad.line().startswith("ScoreStage -> ReportStage: INCOMPATIBLE (structural): ")
    assert '"customer_id"' in (bad.example or "")


def test_streamed_outputs_fit_list_and_stream_readers_but_not_one_object():
    fine = check_workflow(
        m.workflow_of(f"{H}:make_orders", f"{H}:stream_orders", f"{H}:read_stream")
    )
    assert fine.ok, fine.lines()
    bad = check_workflow(m.workflow_of(f"{H}:make_orders", f"{H}:stream_orders", f"{H}:read_one"))
    assert [(e.reader, e.field) for e in bad.incompatible] == [("S2", "<root>")]


def test_a_first_stage_taking_one_record_cannot_take_a_pipes_batch():
    report = check_workflow(m.workflow_of(f"{H}:read_one"))
    [edge] = report.edges
    assert (edge.writer, edge.verdict, edge.method) == ("initial", "INCOMPATIBLE", "shape")
    assert "list model" in edge.detail


def test_a_handler_pinned_to_another_name_is_an_error():
    report = check_workflow(m.workflow_of(f"{H}:pinned", f"{H}:read_orders"))
    [problem] = report.problems
    assert (problem.stage, problem.kind) == ("S0", "pinned")
    assert "'Ingest'" in problem.message
    assert f"{H}:pinned" in problem.message
    assert not report.ok


def test_a_handler_that_does_not_import_is_named():
    report = check_workflow(m.workflow_of(f"{H}:make_orders", "tests.workflow.nowhere:handler"))
    [problem] = report.import_errors
    assert problem.stage == "S1"
    assert problem.message.count("tests.workflow.nowhere:handler") == 1
    assert "No module named 'tests.workflow.nowhere'" in problem.message
    assert report.edges[1].verdict == "UNCHECKED"
    assert "does not import" in report.edges[1].detail


def test_steps_without_handlers_are_unchecked_not_ok():
    config = WorkflowConfiguration(
        workflow_name="w",
        workflow_bucket="bkt-1",
        source_queue="q",
        steps=[
            LambdaStep(state_name="A", function_name="a"),
            LambdaStep(state_name="B", function_name="b"),
        ],
    )
    report = check_workflow(config)
    assert [e.verdict for e in report.edges] == ["UNCHECKED", "UNCHECKED"]
    assert report.ok  # nothing is known to be wrong


def _glue_workflow(tmp_path: Path, script: str, before: str, after: str) -> LoadedWorkflow:
    (tmp_path / "job.py").write_text(script)
    config = WorkflowConfiguration(
        workflow_name="glue-check",
        workflow_type=WorkflowType.STANDARD,
        workflow_bucket="bkt-1",
        source_queue="q",
        steps=[
            LambdaStep(state_name="Before", function_name="before", handler=before),
            GlueStep(state_name="Job", job_name="job", script="job.py"),
            LambdaStep(state_name="After", function_name="after", handler=after),
        ],
    )
    return LoadedWorkflow(config, tmp_path / "wf.py", tmp_path)


def test_glue_schemas_are_compared_with_the_lambda_models_around_them(tmp_path):
    script = (
        'SCHEMA = "order_id STRING NOT NULL, quantity LONG"\n'
        'OUTPUT_SCHEMA = "order_id STRING NOT NULL, quantity LONG NOT NULL"\n'
        "def main(job):\n    job.read_input(schema=SCHEMA)\n"
    )
    report = check_workflow(
        _glue_workflow(tmp_path, script, f"{H}:make_orders", f"{H}:read_orders")
    )
    assert [e.verdict for e in report.edges] == ["OK", "OK", "OK"], report.lines()


def test_a_glue_schema_that_cannot_read_the_previous_model_is_incompatible(tmp_path):
    script = 'def main(job):\n    job.read_input(schema="order_id STRING, quantity BOOLEAN")\n'
    report = check_workflow(
        _glue_workflow(tmp_path, script, f"{H}:make_orders", f"{H}:read_orders")
    )
    edge = report.edges[1]
    assert (edge.verdict, edge.field) == ("INCOMPATIBLE", "[0].quantity"), edge.line()
    assert report.edges[2].verdict == "UNCHECKED"
    assert "declares no OUTPUT_SCHEMA or OUTPUT_MODEL" in report.edges[2].detail


def test_a_glue_output_missing_a_field_the_next_model_needs_is_incompatible(tmp_path):
    script = (
        'OUTPUT_SCHEMA = "order_id STRING NOT NULL"\n'
        'def main(job):\n    job.read_input(schema="order_id STRING")\n'
    )
    report = check_workflow(
        _glue_workflow(tmp_path, script, f"{H}:make_orders", f"{H}:read_orders")
    )
    edge = report.edges[2]
    assert (edge.verdict, edge.field) == ("INCOMPATIBLE", "[0].quantity"), edge.line()


def test_a_glue_output_model_is_used_and_an_undeclared_input_is_unchecked(tmp_path):
    script = (
        "from tests.workflow.check_models import OrderFloat\n"
        "OUTPUT_MODEL = OrderFloat\n"
        "def main(job):\n    job.read_input()\n"
        "if __name__ == '__main__':\n    raise SystemExit('must not run')\n"
    )
    report = check_workflow(
        _glue_workflow(tmp_path, script, f"{H}:make_orders", f"{H}:read_orders")
    )
    assert report.edges[1].verdict == "UNCHECKED"
    assert "no schema=" in report.edges[1].detail
    assert (report.edges[2].verdict, report.edges[2].field) == ("INCOMPATIBLE", "[0].quantity")


def test_the_ddl_parser_reads_nested_types():
    fields = parse_ddl(
        "a STRUCT<b: ARRAY<INT>, c MAP<STRING, DOUBLE>> NOT NULL, `d e` DECIMAL(10, 2)"
    )
    assert [(f.name, f.nullable) for f in fields] == [("a", False), ("d e", True)]
    assert fields[0].type[0] == "STRUCT"
    with pytest.raises(ValueError, match="schema"):
        parse_ddl("a WIBBLE<")


def test_glue_declarations_are_read_without_running_the_script(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(
        'raise SystemExit("ran")\nS = "a " + "LONG"\nread_input(spark, args, schema=S)\n'
    )
    found = read_glue_declarations(script)
    assert found.input_ddl == "a LONG"


def test_checking_twenty_stages_takes_well_under_two_seconds():
    handlers = [f"{H}:make_orders"] + [f"{H}:read_orders"] * 19
    started = time.perf_counter()
    report = check_workflow(m.workflow_of(*handlers))
    assert len(report.edges) == 20
    assert report.ok
    # not a timing assertion: the benchmark measures; this only guards the shape of the work
    assert report.seconds <= time.perf_counter() - started


# -- schema drift -----------------------------------------------------------------------------


def test_each_output_carries_the_fingerprint_of_its_model(tmp_path):
    store = LocalStore(tmp_path)
    # a LocalStore keeps metadata beside JSON Lines objects (an S3 store beside every object)
    result = run_stage(
        m.make_orders_jsonl, store=store, initial_data=[{"id": 1}], execution_id="e-1"
    )
    output = result.result["output"]
    stored = store.get(output["bucket"], output["key"])
    assert stored is not None
    metadata = stored.metadata
    assert metadata[FINGERPRINT_KEY] == schema_fingerprint(list[m.Order])
    assert drift(metadata, list[m.Order]) is None
    message = drift(metadata, list[m.OrderWithTotal])
    assert message is not None
    assert f"fingerprint {metadata[FINGERPRINT_KEY]}" in message
    assert "list[OrderWithTotal]" in message


def test_drift_under_the_same_model_name_says_the_fields_changed():
    class Order(BaseModel):  # an earlier version of m.Order: one field less
        order_id: str

    old = schema_fingerprint(list[Order])
    message = drift({"ceap-schema": "list[Order]", FINGERPRINT_KEY: old}, list[m.Order])
    assert message == (
        f"written by another version of model list[Order] (fingerprint {old}): the code's "
        f"list[Order] has fingerprint {schema_fingerprint(list[m.Order])} (a field added, "
        "removed, renamed or retyped)"
    )


def test_an_output_without_a_fingerprint_shows_no_drift():
    assert drift({"ceap-schema": "list[Order]"}, list[m.Order]) is None


def test_fingerprints_change_with_the_shape_only():
    class Order(BaseModel):  # the same shape under the same name elsewhere
        order_id: str
        quantity: int

    assert schema_fingerprint(Order) == schema_fingerprint(m.Order)
    assert schema_fingerprint(m.Order) != schema_fingerprint(m.OrderFloat)


def test_the_reading_stage_says_which_model_wrote_an_input_it_refuses(tmp_path):
    store = LocalStore(tmp_path)
    first = run_stage(m.make_orders_jsonl, store=store, initial_data=[{"id": 1}], stage="S0")
    fingerprint = schema_fingerprint(list[m.Order])
    with pytest.raises(InputValidationError) as caught:
        run_stage(m.report, store=store, stage="S1", previous_stage="S0")
    message = str(caught.value)
    assert "total_amount" in message
    assert f"it was written by model list[Order] (fingerprint {fingerprint})" in message
    outputs = sorted(p.parent.name for p in tmp_path.rglob("output.json"))
    assert outputs == ["S0"]  # the failed stage wrote nothing
    assert first.result["output"]["key"].endswith("S0/output.json")


def test_the_runner_says_when_the_stored_input_was_written_by_another_model(tmp_path):
    from ceap_stage._context import output_key
    from ceap_stage._formats import JSONL
    from ceap_stage.workflow import LocalRunner

    store = LocalStore(tmp_path)
    config = m.workflow_of(f"{H}:make_orders_jsonl", f"{H}:report")
    old = schema_fingerprint(list[m.OrderFloat])  # what an earlier version of S0 wrote
    store.put(
        config.workflow_bucket,
        output_key("run-1", "S0"),
        b'{"order_id": "a", "quantity": 1.5}\n',
        content_type=JSONL,
        metadata={"ceap-schema": "list[OrderFloat]", FINGERPRINT_KEY: old},
    )
    runner = LocalRunner(config, store=store)
    note = runner._drift_note(1, InputValidationError("fails"), "run-1")
    assert note.startswith(" (schema drift: the stored input was written by model list[OrderFloat]")
    assert f"(fingerprint {old}); the code now has list[Order] (fingerprint " in note
    assert runner._drift_note(1, ValueError("other"), "run-1") == ""


def test_a_streamed_model_has_the_fingerprint_of_its_list():
    assert schema_fingerprint(Iterable[m.Order]) == schema_fingerprint(list[m.Order])


def test_a_model_pydantic_cannot_describe_is_unchecked_with_the_reason():
    report = check_workflow(m.workflow_of(f"{H}:opaque_out", f"{H}:read_orders"))
    edge = report.edges[1]
    assert edge.verdict == "UNCHECKED"
    assert "pydantic cannot describe list[WithOpaque] as a JSON Schema" in edge.detail

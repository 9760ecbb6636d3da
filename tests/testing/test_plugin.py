"""The pytest plugin, tested as users run it: a project's test files and a pytest run."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

STAGE_MODULE = """
from pydantic import BaseModel
from ceap_stage import ExecutionContext, stage


class Order(BaseModel):
    order_id: str
    amount: float


@stage
def handler(orders: list[Order], ctx: ExecutionContext) -> list[Order]:
    ctx.logger.info("filtering", orders=len(orders))
    return [o for o in orders if o.amount > 10]
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(orders_stage=STAGE_MODULE)
    pytester.syspathinsert()
    return pytester


def test_the_fixtures_are_available_without_any_import_or_conftest(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        test_user="""
        from ceap_stage import LocalStore
        from ceap_stage.testing import FakeLambdaContext, MotoS3Store, run_stage

        from orders_stage import handler

        def test_three_lines(local_store):
            orders = [{"order_id": "a", "amount": 50}]
            run = run_stage(handler, store=local_store, previous_output=orders)
            assert [o.order_id for o in run.output] == ["a"]

        def test_local_store_is_a_fresh_directory(local_store, tmp_path):
            assert isinstance(local_store, LocalStore)
            assert str(local_store.root).startswith(str(tmp_path))
            assert local_store.list_keys("ceap-test-bucket", "") == []

        def test_lambda_context(lambda_context):
            assert isinstance(lambda_context, FakeLambdaContext)
            assert 0 < lambda_context.get_remaining_time_in_millis() <= 30_000

        def test_s3_store(s3_store):
            assert isinstance(s3_store, MotoS3Store)
            s3_store.client.head_bucket(Bucket=s3_store.bucket)
            orders = [{"order_id": "b", "amount": 11}]
            run = run_stage(handler, store=s3_store, previous_output=orders)
            assert run.result["output"]["bucket"] == s3_store.bucket
            assert "filtering" in run.messages()

        def test_stage_event(stage_event):
            event = stage_event(current_stage="Score", previous_stage="Filter")
            assert event["previousStage"] == "Filter"
        """
    )
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)


def test_the_fixtures_are_documented(project: pytest.Pytester) -> None:
    result = project.runpytest("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        [
            "*fixtures defined from ceap_stage.testing._plugin*",
            "lambda_context*",
            "*fake Lambda context*",
            "local_store*",
            "*LocalStore*temporary directory*",
            "s3_store*",
            "*moto*bucket*",
            "stage_event*",
            "*build the event*",
        ]
    )


def test_a_failing_stage_fails_the_users_test_with_the_contract_error(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        test_user="""
        from ceap_stage.testing import run_stage
        from orders_stage import handler

        def test_missing_input(local_store):
            run_stage(handler, store=local_store, previous_stage="Nowhere")
        """
    )
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*InputNotFoundError*Nowhere*"])


def test_the_plugin_is_registered_under_pytest11(project: pytest.Pytester) -> None:
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="pytest11") if e.name == "ceap_stage"]
    assert entry.value == "ceap_stage.testing._plugin"
    result = project.runpytest("--trace-config", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*ceap_stage.testing._plugin*"])

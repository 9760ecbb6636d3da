"""The configuration models: defaults, both spellings, validation messages, loading."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ceap_stage.workflow import (
    GlueStep,
    LambdaStep,
    RetryConfiguration,
    WorkflowConfiguration,
    WorkflowConfigurationError,
    WorkflowType,
    load_handler,
    load_workflow,
)


def _config(**overrides: Any) -> WorkflowConfiguration:
    data = {
        "workflow_name": "orders",
        "steps": [LambdaStep(state_name="A", function_name="fa")],
        "workflow_bucket": "ceap-orders-dev",
        "source_queue": "orders-in",
    }
    data.update(overrides)
    return WorkflowConfiguration(**data)


def test_retry_defaults_are_the_kotlin_ones():
    retry = RetryConfiguration()
    assert (
        retry.lambda_max_attempts,
        retry.lambda_interval_seconds,
        retry.lambda_backoff_rate,
    ) == (
        2,
        20,
        2.0,
    )
    assert (retry.glue_max_attempts, retry.glue_interval_minutes, retry.glue_backoff_rate) == (
        2,
        5,
        2.0,
    )
    assert retry.glue_interval_seconds == 300
    assert _config().retry_config == retry
    assert _config().workflow_type is WorkflowType.EXPRESS


def test_camel_case_and_snake_case_both_parse_to_the_same_configuration():
    camel = WorkflowConfiguration.parse(
        {
            "workflowName": "orders",
            "workflowType": "standard",
            "steps": [
                {"stateName": "A", "lambdaFunctionKey": "fa"},
                {"stateName": "G", "glueJobName": "job-g"},
            ],
            "workflowBucket": "ceap-orders-dev",
            "sourceQueue": "orders-in",
            "retryConfig": {"lambdaMaxAttempts": 3, "glueIntervalMinutes": 7},
        }
    )
    snake = WorkflowConfiguration(
        workflow_name="orders",
        workflow_type=WorkflowType.STANDARD,
        steps=[
            LambdaStep(state_name="A", function_name="fa"),
            GlueStep(state_name="G", job_name="job-g"),
        ],
        workflow_bucket="ceap-orders-dev",
        source_queue="orders-in",
        retry_config=RetryConfiguration(lambda_max_attempts=3, glue_interval_minutes=7),
    )
    assert camel == snake
    assert [s.type for s in camel.steps] == ["lambda", "glue"]
    assert isinstance(camel.steps[1], GlueStep)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"steps": []}, "at least one step"),
        ({"workflow_name": "  "}, "workflow_name must not be blank"),
        ({"workflow_name": "orders v2"}, "workflow_name must be 1-80 letters"),
        ({"workflow_bucket": "Not_A_Bucket"}, "not a valid S3 bucket name"),
        ({"source_queue": "bad queue"}, "source_queue must be an SQS queue name"),
        (
            {
                "steps": [
                    LambdaStep(state_name="A", function_name="fa"),
                    LambdaStep(state_name="A", function_name="fb"),
                ]
            },
            "unique within a workflow; repeated: ['A']",
        ),
        ({"steps": [{"state_name": "a/b", "function_name": "f"}]}, "must not contain '/'"),
        ({"steps": [{"state_name": "x" * 81, "function_name": "f"}]}, "81 characters long"),
        ({"steps": [{"state_name": "..", "function_name": "f"}]}, "must not be '.' or '..'"),
        ({"steps": [{"state_name": "initial", "function_name": "f"}]}, "is reserved"),
        ({"steps": [{"state_name": "WorkflowFailed", "function_name": "f"}]}, "is reserved"),
        ({"steps": [{"state_name": "A", "function_name": "no spaces"}]}, "function_name must be"),
        ({"steps": [{"state_name": "A", "function_name": "f", "handler": "nocolon"}]}, "handler"),
        ({"steps": [{"type": "batch", "state_name": "A"}]}, "'lambda' or 'glue'"),
        ({"retry_config": {"lambda_max_attempts": 11}}, "less than or equal to 10"),
        ({"retry_config": {"lambda_interval_seconds": 0}}, "greater than or equal to 1"),
        ({"retry_config": {"glue_backoff_rate": 0.5}}, "greater than or equal to 1"),
        ({"retry_config": {"lambda_max_attempts": -1}}, "greater than or equal to 0"),
    ],
)
def test_invalid_configurations_are_refused_with_a_clear_message(overrides, expected):
    with pytest.raises(WorkflowConfigurationError) as caught:
        _config(**overrides)
    message = str(caught.value)
    assert message.startswith("invalid workflow configuration:")
    assert expected in message


def test_an_express_workflow_refuses_glue_steps_and_says_why():
    with pytest.raises(WorkflowConfigurationError) as caught:
        _config(
            steps=[
                LambdaStep(state_name="A", function_name="fa"),
                GlueStep(state_name="Heavy", job_name="heavy-job"),
            ]
        )
    message = str(caught.value)
    assert "EXPRESS" in message
    assert "5 minutes" in message
    assert ".sync" in message
    assert "Heavy (job heavy-job)" in message
    assert "STANDARD" in message
    # The same steps are fine in a STANDARD workflow.
    ok = _config(
        workflow_type="STANDARD",
        steps=[
            LambdaStep(state_name="A", function_name="fa"),
            GlueStep(state_name="Heavy", job_name="heavy-job"),
        ],
    )
    assert ok.previous_stage(1) == "A"


def test_previous_stage_follows_the_steps_and_a_first_glue_step_reads_initial():
    lam = _config(
        steps=[
            LambdaStep(state_name="A", function_name="f"),
            {"state_name": "B", "function_name": "g"},
        ]
    )
    assert [lam.previous_stage(i) for i in range(2)] == [None, "A"]
    glue = _config(workflow_type="STANDARD", steps=[GlueStep(state_name="G", job_name="j")])
    assert glue.previous_stage(0) == "initial"


def test_configurations_are_immutable():
    config = _config()
    with pytest.raises(Exception, match="frozen"):
        config.workflow_name = "other"  # type: ignore[misc]


def _document() -> dict[str, Any]:
    return {
        "workflowName": "orders",
        "workflowType": "STANDARD",
        "workflowBucket": "ceap-orders-dev",
        "sourceQueue": "arn:aws:sqs:eu-west-1:123456789012:orders-in",
        "steps": [
            {"stateName": "Load", "functionName": "orders-load", "handler": "pkg.mod:load"},
            {"stateName": "Enrich", "jobName": "orders-enrich", "script": "enrich.py"},
        ],
    }


def test_load_from_json_and_yaml_give_the_same_configuration(tmp_path):
    import yaml

    json_file = tmp_path / "wf.json"
    json_file.write_text(json.dumps(_document()))
    yaml_file = tmp_path / "wf.yaml"
    yaml_file.write_text(yaml.safe_dump(_document()))
    from_json = load_workflow(json_file)
    from_yaml = load_workflow(yaml_file)
    assert from_json.config == from_yaml.config
    assert from_yaml.config.state_names == ["Load", "Enrich"]
    assert from_yaml.script_path("enrich.py") == tmp_path.resolve() / "enrich.py"
    assert from_yaml.sample_input is None


def test_load_from_a_python_module_finds_workflow_and_sample_input(tmp_path):
    module = tmp_path / "my_flow.py"
    module.write_text(
        "from ceap_stage.workflow import LambdaStep, WorkflowConfiguration\n"
        "workflow = WorkflowConfiguration(workflow_name='w', workflow_bucket='bkt-1',\n"
        "    source_queue='q', steps=[LambdaStep(state_name='A', function_name='fa')])\n"
        "def sample_input():\n"
        "    return [1, 2]\n"
    )
    loaded = load_workflow(module)
    assert loaded.config.workflow_name == "w"
    assert loaded.sample_input is not None
    assert loaded.sample_input() == [1, 2]


def test_a_step_with_an_invalid_field_in_a_python_module_is_a_configuration_error(tmp_path):
    module = tmp_path / "typo_flow.py"
    module.write_text(
        "from ceap_stage.workflow import LambdaStep, WorkflowConfiguration\n"
        "workflow = WorkflowConfiguration(workflow_name='w', workflow_bucket='bkt-1',\n"
        "    source_queue='q', steps=[LambdaStep(state_name='A', function_name='fa',\n"
        "    handler='pkg.stages.score')])\n"
    )
    with pytest.raises(WorkflowConfigurationError) as caught:
        load_workflow(module)
    message = str(caught.value)
    # the line that built the invalid step (where LambdaStep(...) is called)
    assert message.splitlines()[0] == f"invalid workflow configuration in {module}, line 3:"
    assert "LambdaStep.handler: handler must look like 'package.module:attribute'" in message
    assert "(got 'pkg.stages.score')" in message
    assert "errors.pydantic.dev" not in message


def test_misspelt_keywords_in_a_python_module_get_snake_case_names_and_suggestions(tmp_path):
    # Every error of the step at once, named as the module names them (state_name, not
    # stateName), each misspelt keyword with the closest known one, as in a YAML file.
    module = tmp_path / "typo_keys.py"
    module.write_text(
        "from ceap_stage.workflow import LambdaStep, WorkflowConfiguration\n"
        "steps = [LambdaStep(state_name='A', function_name='fa'),\n"
        "         LambdaStep(stat_name='B', function_name='fb', handlr='pkg.stages:b')]\n"
    )
    with pytest.raises(WorkflowConfigurationError) as caught:
        load_workflow(module)
    assert str(caught.value).splitlines() == [
        f"invalid workflow configuration in {module}, line 3:",
        "  - LambdaStep.state_name: Field required",
        "  - LambdaStep.stat_name: not a known key (did you mean state_name, a key of a Lambda "
        "step and a Glue step?)",
        "  - LambdaStep.handlr: not a known key (did you mean handler, a key of a Lambda step?)",
    ]


def test_a_misspelt_workflow_keyword_in_a_python_module_names_its_line_and_the_key(tmp_path):
    module = tmp_path / "typo_workflow.py"
    module.write_text(
        "from ceap_stage.workflow import LambdaStep, WorkflowConfiguration, RetryConfiguration\n"
        "workflow = WorkflowConfiguration(\n"
        "    workflow_name='w',\n"
        "    steps=[LambdaStep(state_name='A', function_name='fa')],\n"
        "    workflow_buckt='bkt-1',\n"
        "    retry_config={'lambda_max_attemps': 3},\n"
        ")\n"
    )
    with pytest.raises(WorkflowConfigurationError) as caught:
        load_workflow(module)
    assert str(caught.value).splitlines() == [
        f"invalid workflow configuration in {module}, line 2:",
        "  - workflow_bucket: Field required",
        "  - retry_config.lambda_max_attemps: not a known key (did you mean lambda_max_attempts, "
        "a key of RetryConfiguration?)",
        "  - workflow_buckt: not a known key (did you mean workflow_bucket, a key of the "
        "workflow?)",
    ]


def test_a_configuration_written_in_snake_case_is_answered_in_snake_case():
    with pytest.raises(WorkflowConfigurationError) as caught:
        WorkflowConfiguration.parse(
            {"workflow_name": "w", "workflow_bucket": "bkt-1", "steps": [{"state_name": "A"}]}
        )
    assert "  - steps.0.function_name: Field required" in str(caught.value).splitlines()
    with pytest.raises(WorkflowConfigurationError) as caught:
        WorkflowConfiguration.parse(
            {"workflowName": "w", "workflowBucket": "bkt-1", "steps": [{"stateName": "A"}]}
        )
    assert "  - steps.0.functionName: Field required" in str(caught.value).splitlines()


def test_the_example_modules_load_as_package_modules():
    loaded = load_workflow("examples/engagement/workflow.py")
    assert loaded.config.state_names == [
        "ETLStage",
        "FilterStage",
        "ScoreStage",
        "StoreStage",
        "ReactiveStage",
    ]
    standard = load_workflow("examples/engagement/workflow_standard.py")
    assert standard.config.workflow_type is WorkflowType.STANDARD
    assert isinstance(standard.config.steps[2], GlueStep)
    assert standard.script_path("glue_score.py").is_file()


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.yaml", None, "no workflow file"),
        ("wf.txt", "x", "a .py module or a .yaml"),
        ("bad.json", '{\n  "a": }', "not valid JSON at line 2, column 8"),
        ("bad.yaml", "a: [", "not valid YAML"),
        ("list.yaml", "- 1\n", "must be a mapping"),
        ("empty.py", "x = 1\n", "defines no WorkflowConfiguration"),
        (
            "invalid.json",
            json.dumps({**_document(), "workflowType": "EXPRESS"}),
            "cannot run Glue steps",
        ),
    ],
)
def test_load_errors_name_the_problem(tmp_path, name, content, expected):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(WorkflowConfigurationError, match=None) as caught:
        load_workflow(path)
    assert expected in str(caught.value)


def test_load_handler_resolves_module_attribute_and_reports_problems():
    handler = load_handler("tests.workflow.handlers:double")
    assert callable(handler)
    for reference, expected in [
        ("tests.workflow.handlers", "must look like"),
        ("tests.workflow.nope:x", "cannot import"),
        ("tests.workflow.handlers:nope", "no attribute 'nope'"),
        ("tests.workflow.handlers:EVENTS", "not callable"),
        ("tests.workflow.handlers:Item", "is a class, not a stage handler"),  # a model
        ("tests.workflow.missing_dependency:handler", "imports 'no_such_dependency_here'"),
    ]:
        with pytest.raises(WorkflowConfigurationError) as caught:
            load_handler(reference)
        assert expected in str(caught.value)


def test_a_handler_class_is_instantiated():
    # (Imported by name only: mypy knows the example as the top-level package `engagement`.)
    instance = load_handler("examples.engagement.stages:filter_stage")
    handler = load_handler("examples.engagement.stages:FilterStage")
    assert type(handler) is type(instance)
    assert handler is not instance


def test_the_yaml_example_is_the_python_example():
    from_yaml = load_workflow("examples/engagement/workflow.yaml")
    from_python = load_workflow("examples/engagement/workflow.py")
    assert from_yaml.config == from_python.config
    assert from_yaml.sample_input is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"workflowName": "w", "workflowBuckt": "ceap-w", "steps": []},
            "workflowBuckt: not a known key (did you mean workflowBucket, a key of the workflow?)",
        ),
        (
            {"steps": [{"stateName": "A", "functionName": "fa", "handlr": "m:h"}]},
            "steps.0.handlr: not a known key (did you mean handler",
        ),
        (
            {"steps": [{"stateName": "A", "functionName": "fa", "retryConfig": {}}]},
            "steps.0.retryConfig: not a key here: retryConfig is a key of the workflow",
        ),
        (
            {"retryConfig": {"lambdaMaxAttemps": 2}},
            "retryConfig.lambdaMaxAttemps: not a known key (did you mean lambdaMaxAttempts",
        ),
        (
            {"steps": [{"stateName": "A", "functionName": "fa", "zzz": 1}]},
            "steps.0.zzz: not a known key\n",
        ),
    ],
)
def test_a_misspelt_key_is_named_with_the_closest_known_key(data, expected):
    base: dict[str, Any] = {
        "workflowName": "w",
        "workflowBucket": "ceap-w",
        "steps": [{"stateName": "A", "functionName": "fa"}],
    }
    with pytest.raises(WorkflowConfigurationError) as caught:
        WorkflowConfiguration.parse({**base, **data})
    assert expected in str(caught.value) + "\n"

"""The template ``package`` writes: cfn-lint with the serverless rules, checkov (with each skipped
check's reason in the resource Metadata), and what each resource grants and configures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ceap_stage.workflow import load_workflow
from ceap_stage.workflow._stack import StackArtifacts, build_stack_template, lambda_target

from .conftest import REPO

EXAMPLES = REPO / "examples" / "engagement"
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"


def _artifacts(config: Any, *, layer_arn: str | None = None) -> StackArtifacts:
    from ceap_stage.workflow import GlueStep, LambdaStep

    lambdas = [s for s in config.steps if isinstance(s, LambdaStep)]
    glue = [s for s in config.steps if isinstance(s, GlueStep)]
    return StackArtifacts(
        bucket="art-bucket",
        code={s.state_name: f"ceap-stage/artifacts/{'c' * 64}/code.zip" for s in lambdas},
        handlers={s.state_name: s.handler.replace(":", ".") for s in lambdas if s.handler},
        layers={}
        if layer_arn
        else {lambda_target(s): f"ceap-stage/artifacts/{'l' * 64}/layer.zip" for s in lambdas},
        layer_arn=layer_arn,
        glue_scripts={s.state_name: f"ceap-stage/artifacts/{'s' * 64}/job.py" for s in glue},
        wheel=f"ceap-stage/artifacts/{'w' * 64}/ceap_stage-0.1.0-py3-none-any.whl"
        if glue
        else None,
    )


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The EXPRESS example's and the STANDARD (Glue) example's templates, written to files."""
    folder = tmp_path_factory.mktemp("templates")
    paths = {}
    for name in ("workflow.py", "workflow_standard.py"):
        config = load_workflow(EXAMPLES / name).config
        path = folder / name.replace(".py", ".json")
        path.write_text(json.dumps(build_stack_template(config, _artifacts(config)), indent=1))
        paths[name] = path
    return paths


def _resources(path: Path, kind: str) -> dict[str, Any]:
    template = json.loads(path.read_text())
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def _cfn_lint(*paths: Path) -> subprocess.CompletedProcess[str]:
    command = Path(sys.executable).with_name("cfn-lint")
    return subprocess.run(
        [str(command), "--format", "parseable", "--append-rules", "cfn_lint_serverless.rules",
         "--", *map(str, paths)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_cfn_lint_with_the_serverless_rules_passes(templates: dict[str, Path], tmp_path: Path):
    # A copy without the log groups shows the serverless rules are on (and can fail).
    broken = json.loads(templates["workflow.py"].read_text())
    broken["Resources"] = {
        k: v for k, v in broken["Resources"].items() if not k.endswith("StageLogGroup")
    }
    (tmp_path / "broken.json").write_text(json.dumps(broken))

    proc = _cfn_lint(*templates.values(), tmp_path / "broken.json")

    lines = proc.stdout.splitlines()
    assert not [line for line in lines if "broken.json" not in line], proc.stdout + proc.stderr
    assert len([line for line in lines if ":WS1004:" in line]) == 5, proc.stdout


def test_checkov_passes_and_every_skip_gives_its_reason(templates: dict[str, Path]) -> None:
    if not CHECKOV.exists():
        pytest.skip("checkov is installed by `make pytest` into .venv-checkov")
    for path in templates.values():
        proc = subprocess.run(
            [str(CHECKOV), "-f", str(path), "--framework", "cloudformation", "--output", "json",
             "--quiet", "--skip-download"],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        report = json.loads(proc.stdout)
        failed = report["results"]["failed_checks"] if isinstance(report, dict) else []
        assert not failed, [(c["check_id"], c["resource"]) for c in failed]
        assert report["summary"]["passed"] > 50
        for resource in json.loads(path.read_text())["Resources"].values():
            for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
                assert skip["id"].startswith("CKV_AWS_")
                assert len(skip["comment"]) > 20, skip


def test_one_function_per_lambda_step_with_its_log_group_role_and_alarm(
    templates: dict[str, Path],
) -> None:
    path = templates["workflow.py"]
    template = json.loads(path.read_text())
    resources = template["Resources"]
    functions = _resources(path, "AWS::Lambda::Function")
    assert sorted(functions) == sorted(
        f"{s}Function"
        for s in ("ETLStage", "FilterStage", "ScoreStage", "StoreStage", "ReactiveStage")
    )
    etl = functions["ETLStageFunction"]["Properties"]
    assert etl["Handler"] == "examples.engagement.stages.etl_stage"
    assert etl["FunctionName"] == {"Fn::Sub": "engagement-etl-${Environment}"}
    assert etl["Layers"] == [{"Ref": "CeapStageLayerPython312X8664"}]
    assert etl["TracingConfig"] == {"Mode": "Active"}
    assert etl["Environment"]["Variables"] == {
        "CEAP_WORKFLOW_BUCKET": {"Ref": "WorkflowBucket"},
        "POWERTOOLS_SERVICE_NAME": "engagement",
    }
    assert etl["Code"] == {
        "S3Bucket": {"Ref": "ArtifactsBucket"},
        "S3Key": f"ceap-stage/artifacts/{'c' * 64}/code.zip",
    }
    group = resources["ETLStageLogGroup"]["Properties"]
    assert group["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${ETLStageFunction}"}
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    alarm = resources["ETLStageFailuresAlarm"]["Properties"]
    assert alarm["MetricName"] == "StageFailures"
    assert alarm["Dimensions"] == [
        {"Name": "workflow", "Value": "engagement"},
        {"Name": "stage", "Value": "ETLStage"},
    ]
    assert template["Parameters"]["Environment"]["Default"] == "dev"
    assert resources["WorkflowBucket"]["Properties"]["BucketName"]["Fn::If"][0] == (
        "HasWorkflowBucketName"
    )


def _statements(resource: dict[str, Any]) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = resource["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"
    ]
    return statements


def test_a_stage_role_reads_the_previous_stage_and_writes_its_own_prefix_only(
    templates: dict[str, Path],
) -> None:
    resources = json.loads(templates["workflow.py"].read_text())["Resources"]
    filter_role = _statements(resources["FilterStageRole"])
    s3 = [s for s in filter_role if str(s["Action"]).startswith(("s3:", "['s3:"))]
    assert s3 == [
        {
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": {"Fn::Sub": "${WorkflowBucket.Arn}/executions/*/ETLStage/*"},
        },
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
            "Resource": {"Fn::Sub": "${WorkflowBucket.Arn}/executions/*/FilterStage/*"},
        },
        {
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": {"Fn::GetAtt": ["WorkflowBucket", "Arn"]},
            "Condition": {
                "StringLike": {
                    "s3:prefix": ["executions/*/ETLStage/*", "executions/*/FilterStage/*"]
                }
            },
        },
    ]
    # the first stage reads nothing from the bucket: its input is the event
    etl_s3 = [s for s in _statements(resources["ETLStageRole"]) if s["Action"] == "s3:GetObject"]
    assert etl_s3 == []
    every_action = {
        action
        for s in filter_role
        for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert every_action == {
        "logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments",
        "xray:PutTelemetryRecords", "s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload",
        "s3:ListBucket",
    }  # fmt: skip


def test_the_state_machine_logs_traces_and_invokes_the_functions_it_created(
    templates: dict[str, Path],
) -> None:
    express = json.loads(templates["workflow.py"].read_text())["Resources"]
    standard = json.loads(templates["workflow_standard.py"].read_text())["Resources"]
    machine = express["StateMachine"]["Properties"]
    assert machine["LoggingConfiguration"]["Level"] == "ALL"
    assert machine["LoggingConfiguration"]["IncludeExecutionData"] is False
    assert standard["StateMachine"]["Properties"]["LoggingConfiguration"]["Level"] == "ERROR"
    assert machine["TracingConfiguration"] == {"Enabled": True}
    assert machine["StateMachineName"] == {"Fn::Sub": "engagement-${Environment}"}
    text, variables = machine["DefinitionString"]["Fn::Sub"]
    etl = json.loads(text)["States"]["ETLStage"]["Parameters"]
    assert etl["FunctionName"] == "${ETLStageFunctionArn}"
    assert etl["Payload"]["workflowBucket"] == "${WorkflowBucket}"
    assert variables["ETLStageFunctionArn"] == {"Fn::GetAtt": ["ETLStageFunction", "Arn"]}
    assert variables["WorkflowBucket"] == {"Ref": "WorkflowBucket"}
    assert "ceap-workflow-dev" not in json.dumps(express)  # the bucket is no longer hard-coded
    assert express["FailedExecutionsAlarm"]["Properties"]["MetricName"] == "ExecutionsFailed"


def test_a_glue_step_gets_a_job_with_its_script_the_wheel_and_its_own_role(
    templates: dict[str, Path],
) -> None:
    resources = json.loads(templates["workflow_standard.py"].read_text())["Resources"]
    job = resources["ScoreStageJob"]["Properties"]
    assert job["Name"] == {"Fn::Sub": "engagement-score-${Environment}"}
    assert job["Command"]["Name"] == "glueetl"
    assert job["Command"]["ScriptLocation"] == {
        "Fn::Sub": f"s3://${{ArtifactsBucket}}/ceap-stage/artifacts/{'s' * 64}/job.py"
    }
    assert job["DefaultArguments"]["--additional-python-modules"] == {
        "Fn::Sub": f"s3://${{ArtifactsBucket}}/ceap-stage/artifacts/{'w' * 64}/"
        "ceap_stage-0.1.0-py3-none-any.whl"
    }
    assert job["Role"] == {"Fn::GetAtt": ["ScoreStageJobRole", "Arn"]}
    reads = [
        s for s in _statements(resources["ScoreStageJobRole"]) if s["Action"] == "s3:GetObject"
    ]
    assert reads[1]["Resource"] == {"Fn::Sub": "${WorkflowBucket.Arn}/executions/*/FilterStage/*"}
    machine = resources["StateMachine"]["Properties"]
    definition = json.loads(machine["DefinitionString"]["Fn::Sub"][0])
    assert definition["States"]["ScoreStage"]["Parameters"]["JobName"] == "${ScoreStageJobName}"
    # failed executions: the rule's target has a dead-letter queue
    target = resources["FailedExecutionsRule"]["Properties"]["Targets"][0]
    assert target["DeadLetterConfig"] == {
        "Arn": {"Fn::GetAtt": ["FailedExecutionsDeadLetterQueue", "Arn"]}
    }


def test_a_published_layer_replaces_the_built_one() -> None:
    config = load_workflow(EXAMPLES / "workflow.py").config
    arn = "arn:aws:lambda:us-east-1:123456789012:layer:ceap-stage:3"
    template = build_stack_template(config, _artifacts(config, layer_arn=arn))
    assert template["Parameters"]["LayerArn"]["Default"] == arn
    kinds = {r["Type"] for r in template["Resources"].values()}
    assert "AWS::Lambda::LayerVersion" not in kinds
    etl = template["Resources"]["ETLStageFunction"]["Properties"]
    assert etl["Layers"] == [{"Ref": "LayerArn"}]


def test_a_fanned_out_step_s_state_machine_may_run_its_children_and_nothing_broader(
    tmp_path: Path,
) -> None:
    config = load_workflow(REPO / "examples" / "fanout" / "workflow.py").config
    template = build_stack_template(config, _artifacts(config))
    role = template["Resources"]["StateMachineRole"]["Properties"]["Policies"][0]
    statements = role["PolicyDocument"]["Statement"]
    arn = "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}"
    by_action = {json.dumps(s["Action"]): s["Resource"] for s in statements}
    assert by_action['"states:StartExecution"'] == {
        "Fn::Sub": f"{arn}:stateMachine:sensor-scoring-${{Environment}}"
    }
    assert by_action['["states:DescribeExecution", "states:StopExecution"]'] == {
        "Fn::Sub": f"{arn}:execution:sensor-scoring-${{Environment}}/*"
    }
    assert by_action['"s3:GetObject"'] == [
        {"Fn::Sub": "${WorkflowBucket.Arn}/executions/*/Score/shards.jsonl"}
    ]
    # The definition reaches the created function and bucket in every fan-out state.
    definition = template["Resources"]["StateMachine"]["Properties"]["DefinitionString"]
    text = definition["Fn::Sub"][0]
    assert text.count("${ScoreFunctionArn}") == 3  # plan, the child task, collect
    assert '"Bucket":"${WorkflowBucket}"' in text
    path = tmp_path / "fanout.json"
    path.write_text(json.dumps(template, indent=1))
    proc = _cfn_lint(path)
    assert proc.returncode == 0, proc.stdout

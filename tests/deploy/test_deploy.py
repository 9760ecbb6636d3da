"""``ceap-stage deploy`` against moto's server: create, update one stage, no-op, dry run, and
the errors (a missing bucket, no credentials, a failed upload, a failed resource).

What moto's CloudFormation does not do, and how the tests deal with it:

- it creates no ``AWS::Pipes::Pipe``, ``AWS::CloudWatch::Alarm``, ``AWS::Glue::Job`` or
  ``AWS::SQS::QueuePolicy`` (:data:`MOTO_LACKS`): the tests check those are the only resources
  missing, and check the rest;
- its functions ignore ``Layers`` and ``TracingConfig``, its state machines
  ``LoggingConfiguration`` and ``TracingConfiguration`` (the template tests check those);
- it cannot update a function whose ``Layers`` names a layer version of the same stack (the
  update test uses ``--layer-arn``);
- it reports no outputs for a stack made through change sets (``deploy`` then prints the
  outputs that are a resource's ``Ref`` from the stack's resources, as the tests check);
- it never fails or rolls back a resource (``execute_change_set`` applies or raises), so the
  failing-update test adds the events a real failed update reports to moto's answers.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
import uuid
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pytest

from ceap_stage._deploy import DeployOptions, deploy
from ceap_stage._errors import DeployError
from ceap_stage._package import package
from ceap_stage.workflow import load_workflow

from .conftest import REPO, CliRunner
from .projects import two_packages

EXAMPLE = REPO / "examples" / "engagement" / "workflow.py"
MOTO_LACKS = {
    "AWS::Pipes::Pipe",
    "AWS::CloudWatch::Alarm",
    "AWS::Glue::Job",
    "AWS::SQS::QueuePolicy",
}


def _env() -> str:
    """A fresh Environment parameter: names stay unique on the shared moto server."""
    return "t" + uuid.uuid4().hex[:9]


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Aws:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    bucket = f"ceap-artifacts-{uuid.uuid4().hex[:12]}"
    session = boto3.Session(region_name="us-east-1")
    session.client("s3").create_bucket(Bucket=bucket)
    return Aws(session, bucket)


class Aws:
    """Clients on the moto server, and an artifacts bucket that exists."""

    def __init__(self, session: boto3.Session, bucket: str) -> None:
        self.session = session
        self.bucket = bucket
        self.s3 = session.client("s3")
        self.cfn = session.client("cloudformation")
        self.lam = session.client("lambda")

    def keys(self) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return sorted(o["Key"] for o in listed)

    def resources(self, stack: str) -> dict[str, dict[str, Any]]:
        summaries = self.cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"]
        return {r["LogicalResourceId"]: r for r in summaries if r["LogicalResourceId"]}

    def code_sha(self, function: str) -> str:
        return str(self.lam.get_function(FunctionName=function)["Configuration"]["CodeSha256"])


def _zip_bytes() -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("python/placeholder.py", "")
    return buffer.getvalue()


def _deploy_args(
    workflow: str | Path, aws: Aws, stack: str, out: Path, *, cache: Path, env: str
) -> tuple[str | Path, ...]:
    return ("deploy", workflow, "--stack-name", stack, "--artifacts-bucket", aws.bucket,
            "--out", out, "--cache-dir", cache, "--parameter", f"Environment={env}")  # fmt: skip


def test_deploy_creates_the_stack_from_the_example(
    tmp_path: Path, cli: CliRunner, layer_cache: Path, aws: Aws
) -> None:
    env, stack, out = _env(), f"engagement-{uuid.uuid4().hex[:8]}", tmp_path / "out"

    result = cli(*_deploy_args(EXAMPLE, aws, stack, out, cache=layer_cache, env=env))

    assert result.status == 0, result.err
    assert "change set ceap-stage-" in result.out
    assert "Add     ETLStageFunction AWS::Lambda::Function" in result.out
    assert "CREATE_COMPLETE" in result.out
    # every artifact was uploaded under its content-addressed key
    manifest = json.loads((out / "manifest.json").read_text())["artifacts"]
    uploaded = {a["key"] for a in manifest if a["kind"] != "template"}
    assert uploaded <= set(aws.keys())
    # what moto created: everything but the types it lacks
    template = json.loads((out / "template.json").read_text())
    declared = {k: v["Type"] for k, v in template["Resources"].items()}
    created = aws.resources(stack)
    missing = {declared[k] for k in declared if k not in created}
    assert missing == MOTO_LACKS & set(declared.values())
    # the functions: handler, runtime, code, the bucket and service in their environment
    bucket = created["WorkflowBucket"]["PhysicalResourceId"]
    code = next(a for a in manifest if a["kind"] == "lambda-code")
    function = aws.lam.get_function(FunctionName=f"engagement-filter-{env}")["Configuration"]
    assert function["Handler"] == "examples.engagement.stages.filter_stage"
    assert function["Runtime"] == "python3.12"
    assert function["Environment"]["Variables"] == {
        "CEAP_WORKFLOW_BUCKET": bucket,
        "POWERTOOLS_SERVICE_NAME": "engagement",
    }
    assert function["CodeSha256"] == base64.b64encode(bytes.fromhex(code["sha256"])).decode()
    # the function's role reads ETLStage's outputs and writes FilterStage's
    role = function["Role"].rsplit("/", 1)[-1]
    iam = aws.session.client("iam")
    (policy_name,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role, PolicyName=policy_name)["PolicyDocument"]
    if isinstance(document, str):  # moto keeps a CloudFormation policy as Python's repr of it
        document = ast.literal_eval(urllib.parse.unquote(document))
    statements = document["Statement"]
    reads = [s["Resource"] for s in statements if s["Action"] == "s3:GetObject"]
    assert reads == [f"arn:aws:s3:::{bucket}/executions/*/ETLStage/*"]
    # the state machine invokes the functions it created, with the stack's bucket
    machine = created["StateMachine"]["PhysicalResourceId"]
    definition = json.loads(
        aws.session.client("stepfunctions").describe_state_machine(stateMachineArn=machine)[
            "definition"
        ]
    )
    etl = definition["States"]["ETLStage"]["Parameters"]
    assert etl["FunctionName"].endswith(f":function:engagement-etl-{env}")
    assert etl["Payload"]["workflowBucket"] == bucket
    # log groups with the retention parameter's default
    groups = aws.session.client("logs").describe_log_groups(
        logGroupNamePrefix=f"/aws/lambda/engagement-etl-{env}"
    )["logGroups"]
    assert [g["retentionInDays"] for g in groups] == [30]
    # the outputs are printed
    assert re.search(rf"^  StateMachineArn +{re.escape(machine)}$", result.out, re.M)
    assert re.search(rf"^  ETLStageFunctionName +engagement-etl-{env}$", result.out, re.M)


def test_redeploying_an_update_changes_only_the_stage_that_changed(
    tmp_path: Path, cli: CliRunner, layer_cache: Path, aws: Aws
) -> None:
    project = two_packages(tmp_path / "project")
    env, stack, out = _env(), f"orders-{uuid.uuid4().hex[:8]}", tmp_path / "out"
    # moto cannot update a function whose Layers names a LayerVersion of the same stack (it
    # hands the resource object, not its ARN, to the function): use a published layer here.
    layer = aws.lam.publish_layer_version(
        LayerName=f"ceap-stage-{env}", Content={"ZipFile": _zip_bytes()}
    )["LayerVersionArn"]
    args = (*_deploy_args("workflow.py", aws, stack, out, cache=layer_cache, env=env),
            "--layer-arn", layer)  # fmt: skip
    assert cli(*args, cwd=project).status == 0
    a_before, b_before = aws.code_sha(f"orders-a-{env}"), aws.code_sha(f"orders-b-{env}")

    # nothing changed: nothing uploaded, the change set is empty
    again = cli(*args, cwd=project)
    assert again.status == 0, again.err
    assert "uploaded to" not in again.out
    assert f"stack {stack} is up to date: no changes" in again.out

    # one stage changed: only its zip is uploaded, only its function's code changes
    handler = project / "pkg_b" / "handler.py"
    handler.write_text(handler.read_text().replace("> 1", "> 2"))
    update = cli(*args, cwd=project)

    assert update.status == 0, update.err
    uploads = [line for line in update.out.splitlines() if "uploaded to" in line]
    assert len(uploads) == 1
    assert "pkg_b+pkg_common.zip" in uploads[0]
    assert "Modify  BFunction AWS::Lambda::Function" in update.out
    assert "UPDATE_COMPLETE" in update.out
    assert aws.code_sha(f"orders-a-{env}") == a_before
    assert aws.code_sha(f"orders-b-{env}") != b_before


def test_dry_run_shows_the_change_set_and_changes_nothing(
    tmp_path: Path, cli: CliRunner, layer_cache: Path, aws: Aws
) -> None:
    env, stack = _env(), f"dry-{uuid.uuid4().hex[:8]}"

    result = cli(*_deploy_args(EXAMPLE, aws, stack, tmp_path / "out", cache=layer_cache, env=env),
                 "--dry-run")  # fmt: skip

    assert result.status == 0, result.err
    assert "Add     StateMachine AWS::StepFunctions::StateMachine" in result.out
    assert "dry run: the change set was deleted; nothing changed" in result.out
    assert aws.keys() == []
    stacks = aws.cfn.list_stacks()["StackSummaries"]
    assert [
        s for s in stacks if s["StackName"] == stack and s["StackStatus"] != "DELETE_COMPLETE"
    ] == []
    with pytest.raises(aws.lam.exceptions.ResourceNotFoundException):
        aws.lam.get_function(FunctionName=f"engagement-etl-{env}")


class _FailingUpdate:
    """A session on moto whose CloudFormation reports the events of a failed update: what
    moto itself never does (see the module docstring)."""

    def __init__(self, session: boto3.Session) -> None:
        self.session = session

    def client(self, name: str) -> Any:
        real = self.session.client(name)  # type: ignore[call-overload]
        return _FailingCfn(real) if name == "cloudformation" else real


class _FailingCfn:
    FAILED: ClassVar[dict[str, str]] = {
        "EventId": "failed-1",
        "LogicalResourceId": "FilterStageFunction",
        "ResourceType": "AWS::Lambda::Function",
        "ResourceStatus": "UPDATE_FAILED",
        "ResourceStatusReason": "MemorySize 99 is below the minimum of 128",
    }

    def __init__(self, real: Any) -> None:
        self.real = real
        self.executed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def execute_change_set(self, **kwargs: Any) -> Any:
        self.executed = True
        return self.real.execute_change_set(**kwargs)

    def describe_stacks(self, **kwargs: Any) -> Any:
        answer = self.real.describe_stacks(**kwargs)
        if self.executed:
            answer["Stacks"][0]["StackStatus"] = "UPDATE_ROLLBACK_COMPLETE"
        return answer

    def get_paginator(self, name: str) -> Any:
        paginator = self.real.get_paginator(name)
        if name != "describe_stack_events" or not self.executed:
            return paginator
        cancelled = {**self.FAILED, "EventId": "c", "LogicalResourceId": "ScoreStageFunction",
                     "ResourceStatusReason": "Resource update cancelled"}  # fmt: skip

        class Events:
            def paginate(self, **kwargs: Any) -> Any:
                for page in paginator.paginate(**kwargs):
                    yield {
                        **page,
                        "StackEvents": [cancelled, _FailingCfn.FAILED, *page["StackEvents"]],
                    }

        return Events()


def test_a_failed_update_exits_1_naming_the_resource_and_its_reason(
    tmp_path: Path, cli: CliRunner, layer_cache: Path, aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    env, stack = _env(), f"fail-{uuid.uuid4().hex[:8]}"
    assert (
        cli(*_deploy_args(EXAMPLE, aws, stack, tmp_path / "out", cache=layer_cache, env=env)).status
        == 0
    )
    loaded = load_workflow(EXAMPLE)
    result = package(loaded, artifacts_bucket=aws.bucket, out_dir=tmp_path / "out",
                     cache_dir=layer_cache, say=lambda _: None)  # fmt: skip
    options = DeployOptions(stack, aws.bucket, {"Environment": env, "LogRetentionDays": "7"},
                            poll_seconds=0.01)  # fmt: skip

    with pytest.raises(DeployError) as failure:
        deploy(result, options, say=print, session=_FailingUpdate(aws.session))

    assert str(failure.value) == (
        f"stack {stack}: FilterStageFunction (AWS::Lambda::Function) UPDATE_FAILED: MemorySize "
        "99 is below the minimum of 128 (stack UPDATE_ROLLBACK_COMPLETE)"
    )
    assert "UPDATE_FAILED AWS::Lambda::Function FilterStageFunction" in capsys.readouterr().out


def test_an_artifacts_bucket_that_does_not_exist_exits_1_before_any_upload(
    tmp_path: Path, cli: CliRunner, layer_cache: Path, aws: Aws
) -> None:
    aws.bucket = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    stack = f"nobucket-{uuid.uuid4().hex[:8]}"

    result = cli(
        *_deploy_args(EXAMPLE, aws, stack, tmp_path / "out", cache=layer_cache, env=_env())
    )

    assert result.status == 1
    assert result.err.strip() == (
        f"ceap-stage deploy: error: artifacts bucket '{aws.bucket}' does not exist: create it "
        "or name another with --artifacts-bucket"
    )
    assert stack not in {s["StackName"] for s in aws.cfn.list_stacks()["StackSummaries"]}
    assert not (tmp_path / "out").exists()  # told before anything was built


def test_missing_credentials_exit_2_with_one_line(
    tmp_path: Path,
    cli: CliRunner,
    layer_cache: Path,
    aws: Aws,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_SECURITY_TOKEN", "AWS_PROFILE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))

    result = cli(
        *_deploy_args(EXAMPLE, aws, "nocreds", tmp_path / "out", cache=layer_cache, env=_env())
    )

    assert result.status == 2
    assert result.err.startswith("ceap-stage deploy: error: no AWS credentials: set AWS_PROFILE")
    assert len(result.err.strip().splitlines()) == 1
    assert aws.keys() == []
    assert not (tmp_path / "out").exists()  # told before anything was built


def test_no_region_tells_to_set_aws_default_region_which_boto3_reads(
    tmp_path: Path,
    cli: CliRunner,
    layer_cache: Path,
    aws: Aws,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # AWS_REGION alone is what the old advice asked for; boto3 does not read it.
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    assert boto3.Session().region_name is None

    result = cli(
        *_deploy_args(EXAMPLE, aws, "noregion", tmp_path / "out", cache=layer_cache, env=_env())
    )

    assert result.status == 2
    assert result.err.startswith(
        "ceap-stage deploy: error: no AWS region: pass --region, or set AWS_DEFAULT_REGION"
    )
    assert "boto3 does not read AWS_REGION" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert aws.keys() == []
    assert not (tmp_path / "out").exists()  # told before anything was built

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert boto3.Session().region_name == "eu-west-1"  # the variable the advice names works


def test_a_failed_upload_says_what_was_uploaded_before_it(
    tmp_path: Path, layer_cache: Path, aws: Aws
) -> None:
    out = tmp_path / "out"
    loaded = load_workflow(EXAMPLE)
    result = package(loaded, artifacts_bucket=aws.bucket, out_dir=out, cache_dir=layer_cache)

    class RefusesTheLayer:
        def __init__(self, session: boto3.Session) -> None:
            self.session = session

        def client(self, name: str) -> Any:
            real: Any = self.session.client(name)  # type: ignore[call-overload]
            if name != "s3":
                return real
            original = real.put_object

            def put_object(**kwargs: Any) -> Any:
                if kwargs["Key"].endswith("x86_64.zip"):
                    from botocore.exceptions import ClientError

                    error: Any = {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}
                    raise ClientError(error, "PutObject")
                return original(**kwargs)

            real.put_object = put_object
            return real

    with pytest.raises(DeployError) as failure:
        deploy(result, DeployOptions("upload-fails", aws.bucket), say=lambda _: None,
               session=RefusesTheLayer(aws.session))  # fmt: skip

    code = result.code["ETLStage"]
    (layer,) = result.layers.values()
    message = str(failure.value)
    assert message.startswith(
        f"uploading {layer.path.name} to s3://{aws.bucket}/{layer.key} failed:"
    )
    assert f"AccessDenied Access Denied; uploaded before it: {code.key};" in message
    assert aws.keys() == [code.key]  # what the message says, and nothing else
    assert "upload-fails" not in {s["StackName"] for s in aws.cfn.list_stacks()["StackSummaries"]}


def test_the_example_deploys_from_a_fresh_clone(
    tmp_path: Path, moto_server: str, aws: Aws, layer_cache: Path
) -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    environment = _env()

    proc = subprocess.run(
        [str(Path(sys.executable).with_name("ceap-stage")), *map(str, _deploy_args(
            "examples/engagement/workflow.py", aws, "fresh-clone", clone / ".ceap" / "package",
            cache=layer_cache, env=environment))],
        cwd=clone, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "CREATE_COMPLETE" in proc.stdout
    names = aws.lam.list_functions()["Functions"]
    assert f"engagement-reactive-{environment}" in {f["FunctionName"] for f in names}


def test_deploy_refuses_an_incompatible_workflow_before_any_upload(
    tmp_path: Path, cli: CliRunner, aws: Aws
) -> None:
    broken = Path(__file__).resolve().parents[1] / "workflow" / "broken_engagement.py"
    stack = f"broken-{uuid.uuid4().hex[:8]}"

    result = cli(
        *_deploy_args(broken, aws, stack, tmp_path / "out", cache=tmp_path / "cache", env=_env())
    )

    assert result.status == 1
    assert "ScoreStage -> ReportStage: INCOMPATIBLE" in result.err
    assert "ceap-stage deploy: refused: 1 contract problem(s)" in result.err
    assert aws.keys() == []  # nothing uploaded
    assert not (tmp_path / "out").exists()  # nothing packaged
    assert stack not in {s["StackName"] for s in aws.cfn.list_stacks()["StackSummaries"]}


@pytest.mark.parametrize(
    "case",
    [
        ("ok-stack", "Nope=1", "unknown --parameter Nope; the template declares "),
        (
            "ok-stack",
            "Enviroment=dev",
            "unknown --parameter Enviroment (Enviroment: did you mean Environment?); the "
            "template declares AlarmTopicArn, ArtifactsBucket, Environment,",
        ),
        ("my_flow", "Environment=dev", "stack name 'my_flow' is not valid: a letter, then"),
    ],
)
def test_an_option_cloudformation_would_refuse_exits_2_before_any_upload(
    tmp_path: Path, cli: CliRunner, layer_cache: Path, aws: Aws, case: tuple[str, str, str]
) -> None:
    stack, parameter, expected = case
    result = cli(
        "deploy", EXAMPLE, "--stack-name", stack, "--artifacts-bucket", aws.bucket,
        "--out", tmp_path / "out", "--cache-dir", layer_cache, "--parameter", parameter,
    )  # fmt: skip

    assert result.status == 2
    assert result.err.startswith(f"ceap-stage deploy: error: {expected}")
    assert len(result.err.strip().splitlines()) == 1
    assert aws.keys() == []
    assert stack not in {s["StackName"] for s in aws.cfn.list_stacks()["StackSummaries"]}

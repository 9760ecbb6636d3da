"""``ceap-stage deploy``: upload a package and create or update its stack through a change set.

1. Check the session: a region and credentials (else :class:`DeployError`, a usage error).
2. Check the artifacts bucket exists and is reachable.
3. Upload every artifact under its content-addressed key, skipping those already there; a failed
   upload stops the deploy and says what was uploaded and what was not (rerunning resumes: what
   is there is skipped).
4. Create a change set (``CREATE`` for a new stack, ``UPDATE`` otherwise) and wait for it.
   With ``dry_run``: print its changes, delete it (and the empty stack a ``CREATE`` change set
   leaves), stop. A change set without changes is deleted and the deploy ends there.
5. Execute it; print the stack events as they come; on success print the outputs; on failure
   raise :class:`DeployError` naming the first resource that failed and its reason.

boto3 finds credentials, ``AWS_PROFILE``, the region and ``AWS_ENDPOINT_URL`` itself; ``region``
and ``profile`` override the first two.
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import orjson

from ._errors import ConfigurationError, DeployError

if TYPE_CHECKING:
    from ._package import Artifact, PackageResult

__all__ = ["DeployOptions", "deploy", "parse_parameters"]

#: The largest template CloudFormation takes inline (a bigger one is read from S3).
MAX_TEMPLATE_BODY: Final = 51_200
#: A CloudFormation stack name: a letter, then letters, digits and hyphens (128 at most).
_STACK_NAME: Final = re.compile(r"[A-Za-z][-A-Za-z0-9]{0,127}")
_CAPABILITIES: Final = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
_DONE: Final = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE"})
_FAILED_END: Final = frozenset(
    {
        "CREATE_FAILED",
        "ROLLBACK_COMPLETE",
        "ROLLBACK_FAILED",
        "UPDATE_ROLLBACK_COMPLETE",
        "UPDATE_ROLLBACK_FAILED",
        "UPDATE_FAILED",
        "DELETE_COMPLETE",
        "DELETE_FAILED",
    }
)

_Say = Callable[[str], None]


@dataclass(frozen=True)
class DeployOptions:
    """What ``ceap-stage deploy`` was asked.

    Example:
        >>> DeployOptions("engagement-dev", "my-artifacts", {"Environment": "dev"}).dry_run
        False
    """

    stack_name: str
    artifacts_bucket: str
    parameters: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False
    region: str | None = None
    profile: str | None = None
    poll_seconds: float = 2.0


def parse_parameters(values: Sequence[str]) -> dict[str, str]:
    """``["K=V", ...]`` as a dict.

    Raises:
        ValueError: An item has no ``=`` or an empty key.

    Example:
        >>> parse_parameters(["Environment=prod", "AlarmTopicArn="])
        {'Environment': 'prod', 'AlarmTopicArn': ''}
    """
    parameters: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--parameter must be KEY=VALUE, not {value!r}")
        parameters[key.strip()] = rest
    return parameters


def _reason(exc: Exception) -> tuple[str, str]:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return str(error.get("Code", "")), str(error.get("Message", "")) or str(exc)
    return type(exc).__name__, str(exc)


def _session(options: DeployOptions) -> Any:
    import boto3
    from botocore.exceptions import BotoCoreError, ProfileNotFound

    try:
        session = boto3.Session(profile_name=options.profile, region_name=options.region)
    except ProfileNotFound as exc:
        raise ConfigurationError(f"{exc}; fix --profile or AWS_PROFILE") from None
    if not session.region_name:
        raise ConfigurationError(
            "no AWS region: pass --region, or set AWS_DEFAULT_REGION or a profile's region "
            "(boto3 does not read AWS_REGION)"
        )
    try:
        credentials = session.get_credentials()
    except BotoCoreError as exc:
        raise ConfigurationError(f"cannot read AWS credentials: {exc}") from None
    if credentials is None:
        raise ConfigurationError(
            "no AWS credentials: set AWS_PROFILE (or --profile), or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY"
        )
    return session


def preflight(options: DeployOptions) -> Any:
    """What ``deploy`` needs from AWS before anything is built: a session and the bucket.

    ``ceap-stage deploy`` calls it before it packages, so a missing region, missing credentials
    or an artifacts bucket that does not exist are reported at once, not after the layer build.

    Returns:
        The boto3 session to hand to :func:`deploy`.

    Raises:
        ConfigurationError: No region, no credentials, an unknown profile, or an invalid stack
            name; nothing was asked of AWS.
        DeployError: The artifacts bucket does not exist or may not be written.

    Example:
        >>> session = preflight(DeployOptions("engagement-dev", "my-artifacts"))  # doctest: +SKIP
    """
    _check_stack_name(options)
    session = _session(options)
    _check_bucket(session.client("s3"), options.artifacts_bucket)
    return session


def _check_stack_name(options: DeployOptions) -> None:
    if not _STACK_NAME.fullmatch(options.stack_name):
        raise ConfigurationError(
            f"stack name {options.stack_name!r} is not valid: a letter, then letters, digits "
            "and hyphens, 128 characters at most"
        )


def _check_options(result: PackageResult, options: DeployOptions) -> None:
    """Refuse a stack name or parameters CloudFormation would refuse, before asking AWS."""
    _check_stack_name(options)
    declared = result.template.get("Parameters", {})
    unknown = sorted(set(options.parameters) - set(declared))
    if unknown:
        hints = [
            f"{name}: did you mean {close[0]}?"
            for name in unknown
            if (close := difflib.get_close_matches(name, declared, n=1))
        ]
        hint = "; ".join(hints)
        raise ConfigurationError(
            f"unknown --parameter {', '.join(unknown)}"
            + (f" ({hint})" if hint else "")
            + f"; the template declares {', '.join(sorted(declared))}"
        )


def _check_bucket(s3: Any, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception as exc:
        code, message = _reason(exc)
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise DeployError(
                f"artifacts bucket {bucket!r} does not exist: create it or name another with "
                "--artifacts-bucket"
            ) from None
        if code in ("403", "AccessDenied", "Forbidden"):
            raise DeployError(
                f"artifacts bucket {bucket!r}: access denied; use credentials that may write to it"
            ) from None
        raise DeployError(f"artifacts bucket {bucket!r}: {code} {message}".strip()) from None


def _exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        code, _ = _reason(exc)
        if code in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def upload(s3: Any, bucket: str, artifacts: Sequence[Artifact], say: _Say) -> list[str]:
    """Upload what is not there yet; return the keys uploaded.

    Raises:
        DeployError: An upload failed; the message lists what was uploaded before it.
    """
    uploaded: list[str] = []
    for artifact in artifacts:
        try:
            if _exists(s3, bucket, artifact.key):
                say(f"  {artifact.path.name}: already in s3://{bucket}/{artifact.key}")
                continue
            with artifact.path.open("rb") as body:
                s3.put_object(
                    Bucket=bucket,
                    Key=artifact.key,
                    Body=body,
                    ChecksumSHA256=_b64(artifact.sha256),
                )
        except Exception as exc:
            code, message = _reason(exc)
            done = ", ".join(uploaded) or "nothing"
            raise DeployError(
                f"uploading {artifact.path.name} to s3://{bucket}/{artifact.key} failed: "
                f"{code} {message}; uploaded before it: {done}; nothing else was changed "
                "(rerun to resume)"
            ) from None
        uploaded.append(artifact.key)
        say(f"  {artifact.path.name}: uploaded to s3://{bucket}/{artifact.key}")
    return uploaded


def _b64(sha256_hex: str) -> str:
    import base64

    return base64.b64encode(bytes.fromhex(sha256_hex)).decode()


def _stack_status(cfn: Any, name: str) -> str | None:
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except Exception as exc:
        code, message = _reason(exc)
        if "does not exist" in message:
            return None
        raise DeployError(f"stack {name}: {code} {message}") from None
    return str(stacks[0]["StackStatus"]) if stacks else None


def _wait_change_set(cfn: Any, stack: str, change_set: str, poll: float) -> dict[str, Any]:
    while True:
        described: dict[str, Any] = cfn.describe_change_set(
            StackName=stack, ChangeSetName=change_set
        )
        if described["Status"] in ("CREATE_COMPLETE", "FAILED"):
            return described
        time.sleep(poll)


def _describe_change(change: dict[str, Any]) -> str:
    resource = change.get("ResourceChange", {})
    replacement = resource.get("Replacement")
    extra = f" (replacement: {replacement})" if replacement not in (None, "False") else ""
    return (
        f"  {resource.get('Action', '?'):<7} {resource.get('LogicalResourceId', '?')} "
        f"{resource.get('ResourceType', '')}{extra}"
    )


def _event_line(event: dict[str, Any]) -> str:
    stamp = event.get("Timestamp")
    when = stamp.strftime("%H:%M:%S") if isinstance(stamp, datetime) else ""
    reason = event.get("ResourceStatusReason")
    return (
        f"  {when} {event.get('ResourceStatus', '')} {event.get('ResourceType', '')} "
        f"{event.get('LogicalResourceId', '')}" + (f": {reason}" if reason else "")
    ).rstrip()


def _new_events(cfn: Any, stack: str, seen: set[str]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for page in cfn.get_paginator("describe_stack_events").paginate(StackName=stack):
        for event in page["StackEvents"]:
            if event["EventId"] in seen:
                return list(reversed(events))
            events.append(event)
    return list(reversed(events))


def _first_failure(events: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    for event in events:
        status = str(event.get("ResourceStatus", ""))
        reason = str(event.get("ResourceStatusReason") or "")
        if status.endswith("_FAILED") and "cancelled" not in reason.lower():
            return event
    return None


def deploy(
    result: PackageResult, options: DeployOptions, *, say: _Say = print, session: Any = None
) -> dict[str, str]:
    """Upload ``result``'s artifacts and create or update the stack; return the stack outputs.

    Args:
        result: What :func:`ceap_stage._package.package` built.
        options: The stack, bucket, parameters and flags.
        say: Prints progress.
        session: A boto3 session to use (default: one from ``options`` and the environment).

    Raises:
        ConfigurationError: A setting is missing or wrong (region, credentials, profile, an
            unknown parameter); nothing was asked of AWS.
        DeployError: AWS refused (the bucket, an upload, the change set, a resource).

    Example:
        >>> deploy(result, DeployOptions("engagement-dev", "my-artifacts"))  # doctest: +SKIP
        {'StateMachineArn': 'arn:aws:states:...', ...}
    """
    _check_options(result, options)
    session = session or _session(options)
    s3 = session.client("s3")
    cfn = session.client("cloudformation")
    bucket = options.artifacts_bucket
    stack = options.stack_name
    _check_bucket(s3, bucket)
    template_artifact = result.artifacts[-1]
    artifacts = [a for a in result.artifacts if a.kind != "template"]
    if options.dry_run:
        say("dry run: nothing is uploaded; the change set is shown, then deleted")
    else:
        say(f"uploading to s3://{bucket}:")
        upload(s3, bucket, artifacts, say)
    source: dict[str, Any]
    body = orjson.dumps(result.template)  # compact: the limit counts every byte
    if len(body) <= MAX_TEMPLATE_BODY:
        source = {"TemplateBody": body.decode()}
    else:
        upload(s3, bucket, [template_artifact], say)
        url = f"https://{bucket}.s3.amazonaws.com/{template_artifact.key}"
        source = {"TemplateURL": url}
    status = _stack_status(cfn, stack)
    kind = "CREATE" if status in (None, "REVIEW_IN_PROGRESS") else "UPDATE"
    if status is not None and status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS":
        raise DeployError(f"stack {stack} is busy ({status}); wait for it to finish and rerun")
    if status == "ROLLBACK_COMPLETE":
        raise DeployError(
            f"stack {stack} is ROLLBACK_COMPLETE (its creation failed) and cannot be updated: "
            "delete it and rerun"
        )
    name = f"ceap-stage-{int(time.time() * 1000)}"
    try:
        cfn.create_change_set(
            StackName=stack,
            ChangeSetName=name,
            ChangeSetType=kind,
            Capabilities=_CAPABILITIES,
            Parameters=[
                {"ParameterKey": k, "ParameterValue": v} for k, v in options.parameters.items()
            ],
            Description=f"ceap-stage deploy of {result.template.get('Description', '')}"[:1024],
            **source,
        )
        described = _wait_change_set(cfn, stack, name, options.poll_seconds)
    except DeployError:
        raise
    except Exception as exc:
        code, message = _reason(exc)
        raise DeployError(f"stack {stack}: the change set was refused: {code} {message}") from None
    changes = described.get("Changes", [])
    if described["Status"] == "FAILED":
        reason = str(described.get("StatusReason", ""))
        _discard(cfn, stack, name, kind)
        if "didn't contain changes" in reason or "No updates" in reason:
            say(f"stack {stack} is up to date: no changes")
            return _outputs(cfn, stack, say, result.template)
        raise DeployError(f"stack {stack}: the change set failed: {reason}")
    say(f"change set {name} ({kind}, {len(changes)} changes):")
    for change in changes:
        say(_describe_change(change))
    if options.dry_run:
        _discard(cfn, stack, name, kind)
        say("dry run: the change set was deleted; nothing changed")
        return {}
    seen = {e["EventId"] for e in _safe_events(cfn, stack)}
    try:
        cfn.execute_change_set(StackName=stack, ChangeSetName=name)
    except Exception as exc:
        code, message = _reason(exc)
        raise DeployError(
            f"stack {stack}: executing the change set failed: {code} {message}"
        ) from None
    history: list[dict[str, Any]] = []
    while True:
        for event in _new_events(cfn, stack, seen):
            seen.add(event["EventId"])
            history.append(event)
            say(_event_line(event))
        status = _stack_status(cfn, stack) or "DELETE_COMPLETE"
        if status in _DONE:
            say(f"stack {stack}: {status}")
            return _outputs(cfn, stack, say, result.template)
        if status in _FAILED_END:
            failure = _first_failure(history)
            if failure is None:
                raise DeployError(f"stack {stack} failed: {status}")
            raise DeployError(
                f"stack {stack}: {failure.get('LogicalResourceId')} "
                f"({failure.get('ResourceType')}) {failure.get('ResourceStatus')}: "
                f"{failure.get('ResourceStatusReason')} (stack {status})"
            )
        time.sleep(options.poll_seconds)


def _safe_events(cfn: Any, stack: str) -> list[dict[str, Any]]:
    try:
        return _new_events(cfn, stack, set())
    except Exception:
        return []


def _discard(cfn: Any, stack: str, name: str, kind: str) -> None:
    cfn.delete_change_set(StackName=stack, ChangeSetName=name)
    if kind == "CREATE" and _stack_status(cfn, stack) == "REVIEW_IN_PROGRESS":
        cfn.delete_stack(StackName=stack)  # the empty stack a CREATE change set made


def _outputs(cfn: Any, stack: str, say: _Say, template: dict[str, Any]) -> dict[str, str]:
    described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    outputs = {o["OutputKey"]: str(o["OutputValue"]) for o in described.get("Outputs") or []}
    if not outputs:
        # Outputs not reported (a CloudFormation emulator may not compute them for change sets):
        # the outputs that are a resource's Ref are its physical id.
        physical = {
            r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
            for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack)
            for r in page["StackResourceSummaries"]
        }
        for key, output in template.get("Outputs", {}).items():
            ref = (
                output.get("Value", {}).get("Ref")
                if isinstance(output.get("Value"), dict)
                else None
            )
            if ref and physical.get(ref):
                outputs[key] = physical[ref]
    if outputs:
        say("outputs:")
        width = max(len(k) for k in outputs)
        for key, value in sorted(outputs.items()):
            say(f"  {key:<{width}}  {value}")
    return outputs

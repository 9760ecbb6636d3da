"""The public surface: ``ceap_stage.__all__`` is sorted, unique, and every name imports."""

from __future__ import annotations

import importlib
import subprocess
import sys

import ceap_stage


def test_all_is_sorted_and_unique():
    assert ceap_stage.__all__ == sorted(ceap_stage.__all__)
    assert len(set(ceap_stage.__all__)) == len(ceap_stage.__all__)


def test_every_exported_name_imports_and_is_documented():
    module = importlib.import_module("ceap_stage")
    for name in ceap_stage.__all__:
        value = getattr(module, name)
        assert not name.startswith("_")
        assert value.__doc__, f"{name} has no docstring"


def test_star_import_gives_exactly_the_public_names():
    namespace: dict[str, object] = {}
    exec("from ceap_stage import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(ceap_stage.__all__)


def test_the_contract_names_are_exported():
    contract = {
        "stage",
        "ExecutionContext",
        "WorkflowLambdaHandler",
        "S3Store",
        "LocalStore",
        "CeapStageError",
        "HandlerDefinitionError",
        "ContextResolutionError",
        "InputNotFoundError",
        "InputValidationError",
        "OutputValidationError",
        "StorageError",
        "TransientStorageError",
    }
    assert contract <= set(ceap_stage.__all__)


def test_importing_the_package_loads_no_aws_client_library():
    code = (
        "import sys, ceap_stage, ceap_stage.observability; "
        "heavy = [m for m in ('boto3', 'botocore', 'aws_xray_sdk', "
        "'aws_lambda_powertools.tracing', 'opentelemetry') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

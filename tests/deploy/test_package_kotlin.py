"""``ceap-stage package`` leaves a Kotlin CEAP step's function alone: it exists already (CEAP
deploys it), and the step's handler is only its local stand-in."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import CliRunner, write_project
from .projects import TWO_PACKAGES

HYBRID = {
    **{name: text for name, text in TWO_PACKAGES.items() if name != "workflow.py"},
    "workflow.py": """
from ceap_stage.workflow import LambdaStep, WorkflowConfiguration

workflow = WorkflowConfiguration(
    workflow_name="orders",
    workflow_type="STANDARD",
    steps=[
        LambdaStep(state_name="A", function_name="orders-a", handler="pkg_a.handler:handle"),
        LambdaStep(state_name="K", function_name="ceap-orders-kotlin", contract="ceap-kotlin",
                   handler="pkg_k.stand_in:score"),
        LambdaStep(state_name="B", function_name="orders-b", handler="pkg_b.handler:handle"),
    ],
    workflow_bucket="orders-workflow-dev",
    source_queue="orders-in",
)
""",
    "pkg_k/__init__.py": "",
    "pkg_k/stand_in.py": "def score(data, event):\n    return data\n",
}


def test_a_kotlin_step_is_neither_packaged_nor_created(
    tmp_path: Path, cli: CliRunner, layer_cache: Path
) -> None:
    project = write_project(tmp_path / "project", HYBRID)
    out = tmp_path / "out"

    result = cli("package", "workflow.py", "--artifacts-bucket", "art-bucket", "--out", out,
                 "--cache-dir", layer_cache, cwd=project)  # fmt: skip

    assert result.status == 0, result.err
    zips = sorted(z.name for z in (out / "lambda").glob("*.zip"))
    assert zips == ["pkg_a+pkg_common+pkg_helpers.zip", "pkg_b+pkg_common.zip"]
    template = json.loads((out / "template.json").read_text())
    functions = [
        name
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function"
    ]
    assert len(functions) == 2
    assert not any(name.startswith("K") for name in functions)
    text = json.dumps(template)
    assert "function:ceap-orders-kotlin" in text  # the role may invoke the existing function
    assert "K status" in text  # the Choice on the Kotlin stage's status

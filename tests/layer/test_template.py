"""layer/template.yaml: valid CloudFormation (cfn-lint), and in step with what the build makes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from .conftest import REPO

pytestmark = pytest.mark.layer

TEMPLATE = REPO / "layer" / "template.yaml"


@pytest.fixture(scope="module")
def cfn_lint_findings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """cfn-lint run once over the template and over a broken copy; findings by file name.

    The broken copy (a runtime Lambda does not have) shows that the check can fail.
    """
    broken = tmp_path_factory.mktemp("cfn") / "broken.yaml"
    broken.write_text(TEMPLATE.read_text().replace("- python3.12", "- python3.99", 1))
    local = Path(sys.executable).with_name("cfn-lint")
    command = str(local) if local.exists() else shutil.which("cfn-lint")
    assert command, "cfn-lint is not installed"
    proc = subprocess.run(
        [command, "--format", "parseable", str(TEMPLATE), str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert not proc.stderr.strip(), proc.stderr
    findings: dict[str, list[str]] = {TEMPLATE.name: [], broken.name: []}
    for line in proc.stdout.splitlines():
        path = line.split(":", 1)[0]
        findings.setdefault(Path(path).name, []).append(line)
    assert (proc.returncode == 0) == (not any(findings.values())), proc.stdout
    return findings


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms: ``!Ref X`` -> ``{"Ref": X}``, ``!Sub`` ->
    ``{"Fn::Sub": ...}``."""


def _short_form(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _short_form)


def load_template(path: Path) -> dict[str, Any]:
    template: dict[str, Any] = yaml.load(path.read_text(), Loader=_CfnLoader)
    return template


def test_template_passes_cfn_lint(cfn_lint_findings: dict[str, list[str]]) -> None:
    assert cfn_lint_findings[TEMPLATE.name] == []


def test_cfn_lint_rejects_a_layer_for_an_unknown_runtime(
    cfn_lint_findings: dict[str, list[str]],
) -> None:
    (finding,) = cfn_lint_findings["broken.yaml"]
    assert ":E3030:'python3.99' is not one of" in finding


def test_template_declares_one_layer_version_per_build_target(build_script: ModuleType) -> None:
    resources = load_template(TEMPLATE)["Resources"]
    layers = {
        name: res["Properties"]
        for name, res in resources.items()
        if res["Type"] == "AWS::Lambda::LayerVersion"
    }
    declared = {
        (props["CompatibleRuntimes"][0], props["CompatibleArchitectures"][0])
        for props in layers.values()
    }
    expected = {
        (f"python{python}", arch)
        for python in build_script.RUNTIMES
        for arch in build_script.ARCHITECTURES
    }
    assert declared == expected
    for name, props in layers.items():
        assert len(props["CompatibleRuntimes"]) == 1, name
        assert len(props["CompatibleArchitectures"]) == 1, name
        # The S3 key is the name the build gives the zip, for the version being deployed.
        python = props["CompatibleRuntimes"][0].removeprefix("python")
        arch = props["CompatibleArchitectures"][0]
        zip_name = build_script.Target(python, arch).zip_name("${CeapStageVersion}")
        assert props["Content"]["S3Key"] == {"Fn::Sub": f"${{ArtifactPrefix}}{zip_name}"}, name
        # Published versions stay available to functions pinned to them.
        assert resources[name]["DeletionPolicy"] == "Retain", name

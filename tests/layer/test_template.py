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


def cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
    local = Path(sys.executable).with_name("cfn-lint")
    command = str(local) if local.exists() else shutil.which("cfn-lint")
    assert command, "cfn-lint is not installed"
    return subprocess.run(
        [command, str(path)], capture_output=True, text=True, timeout=120, check=False
    )


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


def test_template_passes_cfn_lint() -> None:
    proc = cfn_lint(TEMPLATE)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cfn_lint_rejects_a_layer_for_an_unknown_runtime(tmp_path: Path) -> None:
    # The check above can fail: the same template with a runtime Lambda does not have is refused.
    broken = tmp_path / "template.yaml"
    broken.write_text(TEMPLATE.read_text().replace("- python3.12", "- python3.99", 1))
    proc = cfn_lint(broken)
    assert proc.returncode != 0
    assert "python3.99" in proc.stdout


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

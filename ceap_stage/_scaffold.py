"""``ceap-stage init DIR``: a new project with one stage, its test and a workflow.

The project runs as it is (``ceap-stage run workflow.py``), its test passes (``pytest``), and it
packages and deploys (``ceap-stage deploy``)::

    DIR/
      README.md            the commands: set it up, run it, test it, deploy it
      pyproject.toml       depends on ceap-stage; pytest finds the package
      workflow.py          the WorkflowConfiguration and sample_input()
      <package>/__init__.py
      <package>/stages.py  the stage: SQS messages in, orders out
      tests/test_stages.py its test
"""

from __future__ import annotations

import keyword
import os
import re
import sys
import sysconfig
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path
from typing import Final

from ._errors import ConfigurationError

__all__ = ["scaffold"]

_STAGES: Final = '''"""The stages of {name}: each one is a Lambda function."""

from __future__ import annotations

from pydantic import BaseModel

from ceap_stage import ExecutionContext, stage


class Order(BaseModel):
    """One order: the body of an SQS message (ceap-stage parses the bodies of a first stage's
    SQS batch), or the output of an earlier stage."""

    order_id: str
    amount: float


@stage
def keep_paid_orders(orders: list[Order], ctx: ExecutionContext) -> list[Order]:
    """Keep the orders with a positive amount."""
    return [order for order in orders if order.amount > 0]
'''

_WORKFLOW: Final = '''"""The {name} workflow: its steps, and a sample input to run it locally.

    ceap-stage run workflow.py      # run it on this machine
    ceap-stage deploy workflow.py --stack-name {name}-dev --artifacts-bucket BUCKET
"""

from __future__ import annotations

import json
from typing import Any

from ceap_stage.workflow import LambdaStep, WorkflowConfiguration

workflow = WorkflowConfiguration(
    workflow_name="{name}",
    steps=[
        LambdaStep(
            state_name="KeepPaidOrders",
            function_name="{name}-keep-paid",
            handler="{package}.stages:keep_paid_orders",
        ),
    ],
    workflow_bucket="{name}-workflow-dev",
)


def sample_input() -> list[dict[str, Any]]:
    """What the pipe sends the state machine: a batch of SQS messages."""
    orders = [("o-1", 12.5), ("o-2", 0.0), ("o-3", 40.0)]
    return [
        {{"messageId": f"m-{{i}}", "body": json.dumps({{"order_id": oid, "amount": amount}})}}
        for i, (oid, amount) in enumerate(orders)
    ]
'''

_TEST: Final = '''"""The stage's test: run it as Lambda would, on a local store."""

from __future__ import annotations

import json

from ceap_stage.testing import run_stage

from {package}.stages import keep_paid_orders


def test_keep_paid_orders_drops_the_orders_without_an_amount(local_store):
    messages = [
        {{"messageId": "m-1", "body": json.dumps({{"order_id": "o-1", "amount": 12.5}})}},
        {{"messageId": "m-2", "body": json.dumps({{"order_id": "o-2", "amount": 0}})}},
    ]

    run = run_stage(keep_paid_orders, store=local_store, initial_data=messages)

    assert [order.order_id for order in run.output] == ["o-1"]
    assert run.result["recordsProcessed"] == 1
'''

_PYPROJECT: Final = """[project]
name = "{name}"
version = "0.1.0"
requires-python = ">=3.11"
# ceap-stage is not on the package index yet: install it first from a checkout of ceap-stage
# or its wheel (see README.md); pip then finds this dependency satisfied.
dependencies = ["ceap-stage>={version}"]

[project.optional-dependencies]
dev = ["pytest>=8"]

[tool.pytest.ini_options]
pythonpath = ["."]
testpaths = ["tests"]
"""

_README: Final = """# {name}

A data workflow on AWS Step Functions, built with ceap-stage: one stage
(`{package}/stages.py`), its test (`tests/test_stages.py`) and the workflow (`workflow.py`).

Set up an environment with ceap-stage and pytest.
ceap-stage is not on the package index yet: install it from a checkout of ceap-stage (its
folder) or from a wheel built there (`pip wheel --no-deps -w dist .`):

```bash
python3 -m venv .venv && . .venv/bin/activate
pip install /path/to/ceap-stage pytest
# or, from a wheel: pip install /path/to/ceap_stage-{version}-py3-none-any.whl pytest
```

The project itself needs no install: `ceap-stage run` and `pytest` import its stages from this
folder. (`pip install -e '.[dev]'` works too, once ceap-stage is installed as above.)

Run it on this machine (outputs under `.ceap/`), and test it:

```bash
ceap-stage run workflow.py
pytest
```

Deploy it (an S3 bucket for the artifacts must exist; AWS credentials and region as usual):

```bash
ceap-stage deploy workflow.py --stack-name {name}-dev --artifacts-bucket BUCKET
```
"""

_GITIGNORE: Final = ".ceap/\n__pycache__/\n.venv/\n"


#: The project's own top-level modules: the package must not take one of their names
#: (pytest imports ``tests/test_stages.py`` as the top-level module ``test_stages``).
_GENERATED: Final = {
    "tests": "the generated tests folder",
    "test_stages": "the generated test module tests/test_stages.py",
    "workflow": "the generated workflow.py",
}


def _names(directory: Path) -> tuple[str, str]:
    """The workflow name (``my-flow``) and the package name (``my_flow``) of ``directory``."""
    base = re.sub(r"[^a-z0-9]+", "-", directory.resolve().name.lower()).strip("-")
    if not base or not base[0].isalpha():
        base = f"wf-{base}".rstrip("-")
    name = base[:40].rstrip("-")
    package = name.replace("-", "_")
    if keyword.iskeyword(package) or package in ("ceap_stage", "tests"):
        package = f"{package}_stages"
    return name, package


def _clash(package: str) -> str | None:
    """What a top-level package named ``package`` would clash with, or None.

    The project runs with its folder first on ``sys.path`` (``ceap-stage run``, pytest's
    ``pythonpath``), so its package would shadow a module of the same name that Python, pytest
    or ceap-stage import.

    Example:
        >>> _clash("json")
        'the standard library module json'
        >>> _clash("test_stages")
        'the generated test module tests/test_stages.py'
        >>> _clash("order_flow") is None
        True
    """
    if package in _GENERATED:
        return _GENERATED[package]
    if package in sys.stdlib_module_names:
        return f"the standard library module {package}"
    spec = _find(package)
    if spec is None:
        return None
    stdlib = Path(sysconfig.get_path("stdlib")).resolve()
    origin = spec.origin or next(iter(spec.submodule_search_locations or ()), None)
    if origin and Path(origin).resolve().is_relative_to(stdlib):
        return f"the standard library module {package}"  # the test package is not listed
    return f"the installed module {package}"


def _find(name: str) -> ModuleSpec | None:
    """Where ``name`` imports from here, looking anywhere but the current directory."""
    here = {"", os.getcwd()}
    paths = [entry for entry in sys.path if entry not in here]
    for finder in sys.meta_path:
        if finder is PathFinder:
            spec = PathFinder.find_spec(name, paths)
        else:
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(name, None) if find_spec is not None else None
        if spec is not None:
            return spec
    return None


def _project_names(directory: Path) -> tuple[str, str]:
    """:func:`_names`, refused when the package would clash (with a name that would not)."""
    name, package = _names(directory)
    clash = _clash(package)
    if clash is None:
        return name, package
    suggestion = next(
        candidate
        for candidate in (f"{name}-{suffix}" for suffix in ("flow", "workflow", "stages", "wf"))
        if _clash(candidate.replace("-", "_")) is None
    )
    raise ConfigurationError(
        f"{directory.name!r} would name the project's package {package}, which would shadow "
        f"{clash}; choose another name, e.g. {suggestion}"
    )


def scaffold(directory: Path, *, version: str) -> list[Path]:
    """Write a new project into ``directory`` (created; it must be empty); return the files.

    Raises:
        ConfigurationError: ``directory`` exists and is not empty, or its name would make a
            package that shadows a module of the standard library, an installed module or one
            of the project's own (``json``, ``pytest``, ``test``); the message suggests a name.

    Example:
        >>> import tempfile
        >>> files = scaffold(Path(tempfile.mkdtemp()) / "orders", version="0.1.0")
        >>> sorted(p.name for p in files)[:3]
        ['.gitignore', 'README.md', '__init__.py']
    """
    if directory.exists() and any(directory.iterdir()):
        raise ConfigurationError(f"{directory} is not empty; choose a new or empty folder")
    name, package = _project_names(directory)
    values = {"name": name, "package": package, "version": version}
    files = {
        "README.md": _README,
        "pyproject.toml": _PYPROJECT,
        ".gitignore": _GITIGNORE,
        "workflow.py": _WORKFLOW,
        f"{package}/__init__.py": '"""The {name} stages."""\n',
        f"{package}/stages.py": _STAGES,
        "tests/test_stages.py": _TEST,
    }
    written = []
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(**values), encoding="utf-8")
        written.append(path)
    return written

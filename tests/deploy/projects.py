"""Small projects the package/deploy tests write into temporary folders."""

from __future__ import annotations

from pathlib import Path

from .conftest import write_project

STAGE = """
from pydantic import BaseModel

from ceap_stage import ExecutionContext, stage
from pkg_common.models import Order


@stage
def handle(orders: list[Order], ctx: ExecutionContext) -> list[Order]:
    {body}
"""

#: A STANDARD workflow: Lambda A, Glue G, Lambda B; A and B in their own packages, sharing
#: ``pkg_common``; A imports ``pkg_helpers`` inside a function (the source is read, not run).
TWO_PACKAGES = {
    "workflow.py": """
from ceap_stage.workflow import GlueStep, LambdaStep, WorkflowConfiguration

workflow = WorkflowConfiguration(
    workflow_name="orders",
    workflow_type="STANDARD",
    steps=[
        LambdaStep(state_name="A", function_name="orders-a", handler="pkg_a.handler:handle"),
        GlueStep(state_name="G", job_name="orders-g", script="jobs/enrich.py"),
        LambdaStep(state_name="B", function_name="orders-b", handler="pkg_b.handler:handle"),
    ],
    workflow_bucket="orders-workflow-dev",
    source_queue="orders-in",
)
""",
    "pkg_a/__init__.py": "",
    "pkg_a/handler.py": STAGE.format(
        body="from pkg_helpers import double\n\n"
        "    return [o.model_copy(update={'amount': double(o.amount)}) for o in orders]"
    ),
    "pkg_a/data.json": '{"rates": [1, 2]}',
    "pkg_a/tests/test_a.py": "def test_a():\n    pass\n",
    "pkg_a/test_handler.py": "def test_b():\n    pass\n",
    "pkg_a/conftest.py": "",
    "pkg_a/__pycache__/handler.cpython-311.pyc": "not bytecode",
    "pkg_a/env/pyvenv.cfg": "home = /usr/bin\n",
    "pkg_a/env/lib/site.py": "",
    "pkg_a/.hidden/notes.txt": "",
    "pkg_b/__init__.py": "",
    "pkg_b/handler.py": STAGE.format(body="return [o for o in orders if o.amount > 1]"),
    "pkg_common/__init__.py": "",
    "pkg_common/models.py": (
        "from pydantic import BaseModel\n\n\nclass Order(BaseModel):\n"
        "    order_id: str\n    amount: float\n"
    ),
    "pkg_helpers.py": "def double(x: float) -> float:\n    return 2 * x\n",
    "pkg_unrelated/__init__.py": "X = 1\n",
    "jobs/enrich.py": "print('the Glue job')\n",
    ".venv/pyvenv.cfg": "home = /usr/bin\n",
}

#: What the code zip of A and of B hold (entries, folders included).
ZIP_A = [
    "pkg_a/",
    "pkg_a/__init__.py",
    "pkg_a/data.json",
    "pkg_a/handler.py",
    "pkg_common/",
    "pkg_common/__init__.py",
    "pkg_common/models.py",
    "pkg_helpers.py",
]
ZIP_B = [
    "pkg_b/",
    "pkg_b/__init__.py",
    "pkg_b/handler.py",
    "pkg_common/",
    "pkg_common/__init__.py",
    "pkg_common/models.py",
]


def two_packages(root: Path) -> Path:
    """Write :data:`TWO_PACKAGES` under ``root``."""
    return write_project(root, TWO_PACKAGES)

"""``ceap-stage check``, and ``run`` refusing an incompatible workflow before any stage runs."""

from __future__ import annotations

import json
from pathlib import Path

from ceap_stage._cli import main

from .test_cli import in_tmp  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parents[2]
BROKEN = str(ROOT / "tests/workflow/broken_engagement.py")
H = "tests.workflow.check_models"


def _workflow(tmp: Path, *handlers: str) -> str:
    path = tmp / "wf.json"
    steps = [
        {"stateName": f"S{i}", "functionName": f"f{i}", "handler": h}
        for i, h in enumerate(handlers)
    ]
    path.write_text(
        json.dumps(
            {"workflowName": "w", "workflowBucket": "ceap-w", "sourceQueue": "q", "steps": steps}
        )
    )
    return str(path)


def test_check_prints_one_line_per_edge_and_exits_0_when_all_fit(in_tmp, capsys):  # noqa: F811
    status = main(["check", str(ROOT / "examples/engagement/workflow.py")])
    out = capsys.readouterr().out.splitlines()
    assert status == 0
    assert out[0].startswith("initial -> ETLStage: OK (shape)")
    assert out[1:5] == [
        "ETLStage -> FilterStage: OK (structural)",
        "FilterStage -> ScoreStage: OK (structural)",
        "ScoreStage -> StoreStage: OK (structural)",
        "StoreStage -> ReactiveStage: OK (structural)",
    ]
    assert out[5].startswith("5 edges: 5 OK, 0 incompatible, 0 unchecked")


def test_check_exits_1_naming_the_field_and_an_example(in_tmp, capsys):  # noqa: F811
    status = main(["check", BROKEN])
    out = capsys.readouterr().out
    assert status == 1
    line = next(x for x in out.splitlines() if "INCOMPATIBLE" in x)
    assert line.startswith("ScoreStage -> ReportStage: INCOMPATIBLE (structural): [0].total_amount")
    assert "e.g. [{" in line


def test_check_exits_1_for_a_pinned_name(in_tmp, capsys):  # noqa: F811
    status = main(["check", _workflow(in_tmp, f"{H}:pinned", f"{H}:read_orders")])
    out = capsys.readouterr().out
    assert status == 1
    assert (
        "S0: ERROR: handler tests.workflow.check_models:pinned is pinned to stage 'Ingest'" in out
    )


def test_check_usage_errors_exit_2(in_tmp, capsys):  # noqa: F811
    assert main(["check", "missing.py"]) == 2
    assert "no workflow file at missing.py" in capsys.readouterr().err
    status = main(["check", _workflow(in_tmp, f"{H}:make_orders", "tests.nowhere:handler")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith(
        "ceap-stage check: error: cannot check the workflow: cannot import the module of "
        "handler 'tests.nowhere:handler': No module named 'tests.nowhere'"
    )
    assert err.count("tests.nowhere:handler") == 1


def test_run_refuses_an_incompatible_workflow_before_any_stage_runs(in_tmp, capsys):  # noqa: F811
    status = main(["run", BROKEN, "--store", f"file://{in_tmp / 'store'}"])
    captured = capsys.readouterr()
    assert status == 1
    assert "ScoreStage -> ReportStage: INCOMPATIBLE" in captured.err
    assert "ceap-stage run: refused: 1 contract problem(s)" in captured.err
    assert "running" not in captured.out  # no stage started
    assert not (in_tmp / "store").exists()  # and no output object was written


def test_no_check_runs_anyway_and_says_so_loudly(in_tmp, capsys):  # noqa: F811
    store = in_tmp / "store"
    status = main(["run", BROKEN, "--store", f"file://{store}", "--no-check"])
    captured = capsys.readouterr()
    assert "WARNING: --no-check: the contracts between stages were NOT checked" in captured.err
    assert status == 1  # ReportStage fails when it runs, as the check said it would
    assert "ReportStage failed with InputValidationError" in captured.err
    assert any(store.rglob("output.json"))


def test_a_workflow_module_that_fails_to_import_is_one_line(in_tmp, capsys):  # noqa: F811
    cases = {
        "syntax.py": ("x = (\n", "syntax.py, line 1: '(' was never closed"),
        "missing_dep.py": (
            "import no_such_dependency_here\n",
            "importing the workflow module missing_dep.py raised ModuleNotFoundError: "
            "No module named 'no_such_dependency_here'",
        ),
        "raises.py": (
            "raise RuntimeError('boom')\n",
            "importing the workflow module raises.py raised RuntimeError: boom",
        ),
    }
    for name, (text, expected) in cases.items():
        (in_tmp / name).write_text(text)
        status = main(["check", name])
        err = capsys.readouterr().err
        assert status == 2
        assert err.startswith("ceap-stage check: error: ")
        assert expected in err
        assert len(err.strip().splitlines()) == 1, err


def test_a_folder_given_as_the_workflow_names_the_file_inside(in_tmp, capsys):  # noqa: F811
    folder = in_tmp / "my_flow"
    folder.mkdir()
    assert main(["check", "my_flow"]) == 2
    assert "my_flow is a folder; name the workflow file" in capsys.readouterr().err
    (folder / "workflow.yaml").write_text("workflowName: w\n")
    assert main(["check", "my_flow"]) == 2
    err = capsys.readouterr().err
    assert err.strip().endswith("did you mean my_flow/workflow.yaml?")


def test_handlers_that_do_not_import_from_here_are_one_line_that_says_where_to_run(
    in_tmp,  # noqa: F811
    capsys,
    monkeypatch,
):
    import sys

    monkeypatch.setattr(sys, "path", list(sys.path))  # main() puts the working directory on it
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    project = in_tmp / "project"
    (project / "shopx").mkdir(parents=True)
    (project / "shopx" / "stages.py").write_text(
        "from ceap_stage import stage\n"
        "@stage\n"
        "def a(xs: list[int]) -> list[int]:\n    return xs\n"
        "@stage\n"
        "def b(xs: list[int]) -> list[int]:\n    return xs\n"
    )
    workflow = _workflow(project, "shopx.stages:a", "shopx.stages:b")
    for command in ("check", "run"):
        assert main([command, workflow]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        (line,) = captured.err.splitlines()  # once, whatever the number of its handlers
        assert line.startswith(
            f"ceap-stage {command}: error: cannot check the workflow: cannot import module "
            "'shopx.stages': No module named 'shopx'"
        )
        assert "(stages S0, S1)" in line
        assert line.endswith(
            f"; run from {project}, the workflow's directory, which holds shopx/stages.py"
        )
    # From there, as the line says, it checks.
    monkeypatch.chdir(project)
    assert main(["check", workflow]) == 0
    assert "S0 -> S1: OK (structural)" in capsys.readouterr().out


def test_one_handler_typo_is_said_once(in_tmp, capsys):  # noqa: F811
    workflow = _workflow(in_tmp, f"{H}:make_orders", f"{H}:read_orderz")
    for command in ("check", "run"):
        assert main([command, workflow]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err == (
            f"ceap-stage {command}: error: cannot check the workflow: handler "
            f"'{H}:read_orderz': no attribute 'read_orderz' (did you mean 'read_orders'?)\n"
        )

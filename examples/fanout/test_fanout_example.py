"""The fan-out example: the fanned-out run gives the records of the plain run, in order."""

from __future__ import annotations

from pathlib import Path

from ceap_stage import LocalStore
from ceap_stage._io import OutputRef, StageIO
from ceap_stage.testing import assert_record_wise
from ceap_stage.workflow import LocalRunner, build_definition

from .stages import Reading, _payload, score
from .workflow import sample_input, scoring_workflow, workflow


def test_score_is_record_wise() -> None:
    readings = [Reading(sensor=f"s-{i % 3}", sequence=i, payload=_payload(i)) for i in range(7)]
    assert_record_wise(score, readings, records_per_shard=2)


def test_the_fanned_out_score_equals_the_plain_score(tmp_path: Path) -> None:
    outputs = []
    for records_per_shard in (700, None):
        config = scoring_workflow(records_per_shard)
        store = LocalStore(tmp_path / str(records_per_shard))
        result = LocalRunner(config, store=store, workers=1).run(
            sample_input(2_000), execution_id="exec-example"
        )
        assert result.succeeded, result.error
        ref = OutputRef(config.workflow_bucket, "exec-example", "Score")
        outputs.append(StageIO(store).read(ref).value)
    assert outputs[0] == outputs[1]
    assert [r["sequence"] for r in outputs[0]] == list(range(2_000))
    assert "Score shards" in build_definition(workflow)["States"]

"""A Python stand-in for the Kotlin ``ScoreStage`` in local runs.

In AWS the step runs the Kotlin CEAP Lambda; locally the runner calls this function with what the
Kotlin stage reads (the previous output, one JSON document) and its event, and writes what it
returns as the stage's ``output.json``. Raising is the Kotlin stage returning
``{"status": "FAILED", "errorMessage": ...}``: the run fails with ``StageFailed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ceap_stage import StageFailed

#: Candidates below this engagement score are dropped, as the Kotlin stage does.
MIN_ENGAGEMENT = 10.0


def score_stage(candidates: Any, event: Mapping[str, Any]) -> dict[str, Any]:
    """Score the candidates as the Kotlin stage does; its output is one camelCase object."""
    if not isinstance(candidates, list):
        raise StageFailed("ScoreStage expects a JSON array of candidates")
    if not candidates:
        raise StageFailed("no candidates to score")
    programs = {c["programId"] for c in candidates}
    marketplaces = {c["marketplace"] for c in candidates}
    if len(programs) != 1 or len(marketplaces) != 1:
        raise StageFailed("a batch must hold one program in one marketplace")
    kept = [
        {**c, "modelScore": round(min(c["engagementScore"] / 100.0, 1.0), 4)}
        for c in candidates
        if c["engagementScore"] >= MIN_ENGAGEMENT
    ]
    return {
        "candidates": kept,
        "metrics": {"candidatesIn": len(candidates), "candidatesOut": len(kept)},
        "programId": programs.pop(),
        "marketplace": marketplaces.pop(),
    }

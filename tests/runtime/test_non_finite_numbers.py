"""A number that is not finite is refused whatever the input's label.

pydantic's JSON parser reads ``NaN``, ``Infinity`` and overflowing numbers (``1e400``) as
floats, and a float field accepts them; JSON has no such numbers and orjson refuses them. An
``application/json`` input is validated in pydantic's JSON mode (one pass), so the runtime sends
such bodies to the strict reader first: labelled or not, they are an ``InputValidationError``.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from ceap_stage import InputValidationError, stage

from ._helpers import key_of, make_event
from .conftest import Backend


class Reading(BaseModel):
    value: float


@pytest.mark.parametrize("content_type", [None, "application/json"], ids=["sniffed", "labelled"])
@pytest.mark.parametrize("number", [b"1e400", b"-1E+999", b"NaN", b"Infinity"])
def test_a_number_that_is_not_finite_is_refused(
    backend: Backend, content_type: str | None, number: bytes
) -> None:
    backend.put_raw(key_of("Filter"), b'[{"value": ' + number + b"}]", content_type)

    @stage(store=backend.store)
    def handler(readings: list[Reading]) -> int:
        return len(readings)

    with pytest.raises(InputValidationError) as caught:
        handler(make_event())
    assert caught.value.key == key_of("Filter")
    assert backend.read(key_of("Score")) is None

"""Fixtures of the queue batch tests: moto's Step Functions interpreter (``sfn``)."""

from tests.workflow._moto_sfn import sfn  # noqa: F401  (the moto Step Functions fixture)

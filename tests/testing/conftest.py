"""Fixtures for the ceap_stage.testing tests.

The plugin tests run pytest in-process (``pytester``), which drops the modules an inner run
imported once it ends. moto and boto3 are imported here, before any inner run, so that every run
shares one copy of them: a second copy of moto would not intercept the botocore the first one
patched, and requests would leave for the real AWS endpoint.
"""

from __future__ import annotations

import boto3  # noqa: F401
import moto  # noqa: F401
from moto import mock_aws  # noqa: F401

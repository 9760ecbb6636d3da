#!/usr/bin/env python3
"""Build the ceap-stage Lambda layer from this repository's source tree (``make layer``).

The builder is part of the installed package (``ceap_stage._layer``, run by ``ceap-stage layer``);
this script runs it with the repository as the source and ``layer/dist/`` as the output::

    python layer/build.py                                # 6 zips (3.11/3.12/3.13 x x86_64/arm64)
    python layer/build.py --python 3.11 --arch x86_64    # one target
    python layer/build.py --wheel dist/ceap_stage-0.1.0-py3-none-any.whl   # a released wheel
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without ceap-stage installed
    sys.path.insert(0, str(ROOT))

from ceap_stage._layer import *  # noqa: E402, F403
from ceap_stage._layer import main as _main  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """Build the requested targets from the repository into ``layer/dist/``."""
    return _main(
        argv, prog="layer/build.py", default_out=ROOT / "layer" / "dist", default_source=ROOT
    )


if __name__ == "__main__":
    sys.exit(main())

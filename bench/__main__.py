"""Run every benchmark: ``python -m bench [NAME ...]`` (``make bench``).

Each ``bench/bench_*.py`` module exposes ``run() -> list[Result]``; results print as ratios
against baselines measured in the same run. Exit status 1 when a figure misses its target.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

from ._harness import Result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help="run only these (e.g. runtime glue)")
    args = parser.parse_args(argv)
    here = Path(__file__).parent
    modules = sorted(
        m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_")
    )
    if args.names:
        modules = [m for m in modules if m.removeprefix("bench_") in args.names]
    failed = False
    for name in modules:
        print(f"== {name.removeprefix('bench_')}", flush=True)
        module = importlib.import_module(f"bench.{name}")
        results: list[Result] = module.run()
        for result in results:
            print(result.line(), flush=True)
            failed |= not result.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

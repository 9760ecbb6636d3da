"""A handler module whose dependency is not installed (load_handler names the dependency)."""

from typing import Any

import no_such_dependency_here  # type: ignore[import-not-found]  # noqa: F401


def handler(event: Any, context: Any) -> Any:
    return event

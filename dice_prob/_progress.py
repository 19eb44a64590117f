"""Progress-bar policy shared by every long-running entry point."""

from __future__ import annotations

import os


def progress_enabled(requested: bool = True) -> bool:
    """True when a progress bar should be shown: requested, and not running under CI (``CI`` set)."""
    return bool(requested) and not os.environ.get("CI")

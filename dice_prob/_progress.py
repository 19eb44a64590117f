"""Progress-bar policy shared by every long-running entry point."""

from __future__ import annotations

import os


def progress_enabled(requested: bool = True) -> bool:
    """True when a progress bar should be shown: requested, and not running under CI (``CI`` set).

    Examples
    --------
    >>> import os
    >>> from dice_prob._progress import progress_enabled
    >>> progress_enabled(False)  # not requested: never shown
    False
    >>> progress_enabled(True) == (not os.environ.get("CI"))  # requested: shown unless under CI
    True
    """
    return bool(requested) and not os.environ.get("CI")

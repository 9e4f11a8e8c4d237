"""The command line that starts this app again as a child process.

From source or a wheel that is `python -m cortensor_desktop ...`. In a PyInstaller build
`sys.executable` is the app itself and has no `-m`: `app -m cortensor_desktop` would be read as
the app's own (unknown) option. `devnet up --detach` and the devnet's node processes use this.
"""

from __future__ import annotations

import sys


def is_frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def app_command(*args: str) -> list[str]:
    """argv for a child running `cortensor-desktop ARGS...` with this same installation."""
    if is_frozen():
        return [sys.executable, *args]
    return [sys.executable, "-m", "cortensor_desktop", *args]

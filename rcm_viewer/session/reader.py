"""The one reader identity: who the audit trail names for every change in a session.

The window, the assessment form and the batch worklist used to decide this each on
their own, with different fallbacks, so one case's audit trail could name two users.
"""

from __future__ import annotations

import getpass

FALLBACK_READER = "unknown reader"


def resolve_reader(configured: str | None = None) -> str:
    """The reader's name from the settings, else the login name, else ``unknown reader``."""
    name = (configured or "").strip()
    if name:
        return name
    try:
        login = getpass.getuser().strip()
    except Exception:  # no login name on some systems (containers, services)
        login = ""
    return login or FALLBACK_READER

"""did-monitor: watches a Vobiz partner DID inventory and alerts before customers notice."""

from __future__ import annotations

__version__ = "0.1.0"

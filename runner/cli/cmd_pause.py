"""Commands registered by this module are added as it is written."""

from __future__ import annotations

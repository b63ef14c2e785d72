"""Timestamps: one format (ISO-8601, UTC, milliseconds) everywhere in the ledger and audit trail."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> str:
    """Current time as an ISO-8601 UTC string."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")

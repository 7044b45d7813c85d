"""What PostgreSQL's plans did: rows read, from `EXPLAIN (ANALYZE, FORMAT JSON)`."""

from __future__ import annotations

from typing import Any


def rows_read_from(node: dict[str, Any], table: str) -> int:
    """The rows every scan of `table` in this plan node and below returned, in all."""
    own = 0
    if node.get("Relation Name") == table:
        own = int(node["Actual Rows"]) * int(node.get("Actual Loops", 1))
    return own + sum(rows_read_from(child, table) for child in node.get("Plans", []))

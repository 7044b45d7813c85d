"""Other couples' histories, for reading plans: the table as PostgreSQL sees it in service,
where no couple holds much of it."""

from __future__ import annotations

from sqlalchemy import Connection, text

_ENDED_COUPLES = (
    "INSERT INTO couples (id, paired_at, ended_at, last_cursor) "
    "SELECT gen_random_uuid(), now(), now(), 0 FROM generate_series(1, :n)"
)
_THEIR_BIDS = (
    "INSERT INTO bids (id, couple_id, client_id, kind, status, created_at, reachable_at, "
    "expires_at) SELECT gen_random_uuid(), c.id, gen_random_uuid(), 'connect', 'answered', t, "
    "t, t + interval '1 day' FROM couples AS c, generate_series(1, :each) AS i, "
    "LATERAL (SELECT now() - random() * interval '1000 hours' + i * interval '0 s') AS at(t) "
    "WHERE c.ended_at IS NOT NULL"
)
_THEIR_REPAIRS = (
    "INSERT INTO repairs (id, couple_id, client_id, status, created_at, last_seq, pause_count, "
    "resolved_at) SELECT gen_random_uuid(), c.id, gen_random_uuid(), 'resolved', t, 0, 0, t "
    "FROM couples AS c, generate_series(1, :each) AS i, "
    "LATERAL (SELECT now() - random() * interval '1000 hours' + i * interval '0 s') AS at(t) "
    "WHERE c.ended_at IS NOT NULL"
)


def other_couples(connection: Connection, n: int = 1000, each: int = 20) -> None:
    """`n` couples that have since unpaired, each with `each` answered bids and as many
    resolved conversations from the last 1000 hours."""
    connection.execute(text(_ENDED_COUPLES), {"n": n})
    connection.execute(text(_THEIR_BIDS), {"each": each})
    connection.execute(text(_THEIR_REPAIRS), {"each": each})

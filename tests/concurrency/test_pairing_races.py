"""Real concurrency on PostgreSQL: two joins that both pair one person."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask
from sqlalchemy import select

from service.models import User
from tests.support.client import ApiClient
from tests.support.locks import lock_queue, rows_held

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


def test_whoever_joins_second_is_told_they_are_paired(client: ApiClient, app: Flask) -> None:
    """Xan shared a code with Zoe and types Yui's. Zoe's join pairs Xan first, while Xan's own
    join, which read Xan unpaired when it began, waits for Xan's row: it must find Xan paired."""
    xan, yui, zoe = client.register("Xan"), client.register("Yui"), client.register("Zoe")
    xans_code = client.post("/api/v1/couple/invites", as_=xan).json()["code"]
    yuis_code = client.post("/api/v1/couple/invites", as_=yui).json()["code"]
    join = ApiClient(client.base_url).post
    xan_row = select(User).where(User.id == uuid.UUID(xan.id)).with_for_update()
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        lock_queue(app) as queued,
        rows_held(app, xan_row),
    ):
        zoes = pool.submit(join, "/api/v1/couple/join", as_=zoe, json={"code": xans_code})
        queued(1)
        xans = pool.submit(join, "/api/v1/couple/join", as_=xan, json={"code": yuis_code})
        queued(2)
    assert zoes.result(timeout=10).status_code == 201
    refused = xans.result(timeout=10)
    assert refused.status_code == 409, refused.text
    assert client.get("/api/v1/couple", as_=xan).json()["partner"]["id"] == zoe.id
    assert client.get("/api/v1/couple", as_=zoe).json()["partner"]["id"] == xan.id
    assert client.get("/api/v1/couple", as_=yui).status_code == 404
    # Yui's code was not spent on the refused join.
    cat = client.register("Cat")
    assert client.post("/api/v1/couple/join", as_=cat, json={"code": yuis_code}).status_code == 201

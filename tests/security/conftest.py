"""Actors for security tests: a couple with a bid, a repair and devices, outsiders, an operator."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from flask import Flask

from service.extensions import db
from service.services import ops_accounts
from service.services.ops_audit import CommandLine
from tests.dashboard.conftest import OperatorAccount, OpsClient
from tests.support import repairs as repair_helpers
from tests.support.client import ApiClient, Person
from tests.support.server import LiveServer

# Who tries each route and event, in this order: whoever owns the resource acts last, so a
# destructive call by the owner cannot hide what an outsider would have been allowed to do.
ACTORS = ("unauthenticated", "operator", "stranger", "former", "partner", "owner")
MEMBERS = ("stranger", "former", "partner", "owner")


def marker(label: str) -> str:
    """A unique, greppable secret for one test run."""
    return f"{label}-{uuid.uuid4().hex}"


@dataclass
class World:
    """Two live couples and an ex, each with something of their own.

    - owner (Ana) and partner (Ben): couple C1. Ana created `bid` and `socket_bid` (to Ben),
      the repair conversation `repair` (messages by both) and her device `owner_device`.
    - stranger (Cy) is paired with Dee (couple C2) and owns `stranger_bid`.
    - former (Fay) was paired with Ana before C1 (couple C0, ended by DELETE /couple); Fay's
      bid `former_bid` and repair `former_repair` belong to that ended couple.
    - operator: signed in to /ops. `target` is an unrelated member the operator acts on.
    - `spare` is an unpaired member whose credentials the public sign-in routes use.
    """

    client: ApiClient
    ops: OpsClient
    operator_account: OperatorAccount
    owner: Person
    partner: Person
    stranger: Person
    stranger_partner: Person
    former: Person
    target: Person
    spare: Person
    bid: dict[str, Any]
    socket_bid: dict[str, Any]
    stranger_bid: dict[str, Any]
    former_bid: dict[str, Any]
    repair: dict[str, Any]
    former_repair: dict[str, Any]
    owner_device: str
    partner_device: str
    target_device: str
    couple_id: str
    secrets: list[str] = field(default_factory=list)

    def person(self, actor: str) -> Person | None:
        return {
            "owner": self.owner,
            "partner": self.partner,
            "stranger": self.stranger,
            "former": self.former,
        }.get(actor)

    def couple_secrets(self) -> list[str]:
        """What nobody outside C1 may ever read: its ids, notes and messages."""
        return [
            self.couple_id,
            self.bid["id"],
            self.socket_bid["id"],
            self.repair["id"],
            self.owner_device,
            self.partner_device,
            *self.secrets,
        ]


def add_device(client: ApiClient, who: Person, token: str, platform: str = "android") -> str:
    response = client.post(
        "/api/v1/devices", as_=who, json={"platform": platform, "push_token": token}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def send_bid(client: ApiClient, sender: Person, note: str, kind: str = "comfort") -> dict[str, Any]:
    body = {"client_id": str(uuid.uuid4()), "kind": kind, "note": note}
    response = client.post("/api/v1/bids", as_=sender, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def create_operator(app: Flask) -> OperatorAccount:
    account = OperatorAccount(f"ops-{os.urandom(4).hex()}@reach.test")
    with app.app_context():
        ops_accounts.create_operator(
            db.session, account.email, account.password, by=CommandLine.here()
        )
    return account


def sign_in_operator(url: str, account: OperatorAccount) -> OpsClient:
    ops = OpsClient(url)
    response = ops.sign_in(account)
    assert response.status_code == 302, response.text
    return ops


@pytest.fixture
def world(app: Flask, live_server: LiveServer, client: ApiClient) -> Iterator[World]:
    secrets: list[str] = []

    def secret(label: str) -> str:
        secrets.append(marker(label))
        return secrets[-1]

    owner, former = client.register("Ana"), client.register("Fay")
    client.pair(owner, former)
    # Fay's own words in C0: hers to export, nobody else's to read.
    former_bid = send_bid(client, former, marker("old-note"))
    former_repair = repair_helpers.start(client, former, topic=marker("old-topic"))
    assert client.delete("/api/v1/couple", as_=former).status_code == 204

    partner = client.register("Ben")
    couple = client.pair(owner, partner)
    stranger, stranger_partner = client.couple("Cy", "Dee")
    target, spare = client.register("Gus"), client.register("Ida")

    bid = send_bid(client, owner, secret("note"))
    socket_bid = send_bid(client, owner, secret("socket-note"))
    stranger_bid = send_bid(client, stranger, marker("stranger-note"))
    repair = repair_helpers.start(client, owner, topic=secret("topic"), bid_id=bid["id"])
    repair_helpers.write(client, owner, repair["id"], body=secret("owner-words"))
    repair_helpers.write(client, partner, repair["id"], body=secret("partner-words"))
    owner_device = add_device(client, owner, secret("owner-push-token"))
    partner_device = add_device(client, partner, secret("partner-push-token"), "ios")
    target_device = add_device(client, target, marker("target-push-token"))

    account = create_operator(app)
    ops = sign_in_operator(live_server.url, account)
    yield World(
        client=client,
        ops=ops,
        operator_account=account,
        owner=owner,
        partner=partner,
        stranger=stranger,
        stranger_partner=stranger_partner,
        former=former,
        target=target,
        spare=spare,
        bid=bid,
        socket_bid=socket_bid,
        stranger_bid=stranger_bid,
        former_bid=former_bid,
        repair=repair,
        former_repair=former_repair,
        owner_device=owner_device,
        partner_device=partner_device,
        target_device=target_device,
        couple_id=str(couple["id"]),
        secrets=secrets,
    )
    ops.http.close()


@pytest.fixture
def http() -> Iterator[Callable[[], requests.Session]]:
    """Plain HTTP sessions (no cookies shared with anyone), closed after the test."""
    made: list[requests.Session] = []

    def make() -> requests.Session:
        made.append(requests.Session())
        return made[-1]

    yield make
    for session in made:
        session.close()

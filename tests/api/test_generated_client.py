"""A client generated from /api/v1/openapi.json decodes every answer of a phone's day.

docs/mobile.md tells phones to generate their models from the document. This generates a
Python client from the document the live server serves (openapi-python-client, offline, in
about a second) and drives a couple's whole flow through it: each answer must decode into the
model its operation documents, as a Swift or Kotlin model generated from the same document
would have to.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest
import requests
from flask import Flask

from schemas.sync import EVENT_TYPES
from service.clock import clock
from service.extensions import db
from service.models import Couple
from service.services import events
from service.worker.runner import Worker
from tests.support.client import PASSWORD, ApiClient
from tests.support.documented import document
from tests.support.phones import Phone
from tests.support.server import LiveServer

PACKAGE = "reach_generated_client"


class Generated:
    """The generated package: `api(tag, operation)` is an operation's module, `m` the models."""

    def __init__(self, package: ModuleType, base_url: str) -> None:
        self.package = package
        self.m: Any = importlib.import_module(f"{PACKAGE}.models")
        self.types: Any = importlib.import_module(f"{PACKAGE}.types")
        self.client_module: Any = importlib.import_module(f"{PACKAGE}.client")
        self.base_url = base_url

    def api(self, tag: str, operation: str) -> Any:
        return importlib.import_module(f"{PACKAGE}.api.{tag}.{operation}")

    def anonymous(self) -> Any:
        return self.client_module.Client(base_url=self.base_url, raise_on_unexpected_status=True)

    def signed_in(self, token: str) -> Any:
        return self.client_module.AuthenticatedClient(
            base_url=self.base_url, token=token, raise_on_unexpected_status=True
        )


@pytest.fixture(scope="module")
def generated(
    live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Generated]:
    where = tmp_path_factory.mktemp("generated")
    document = where / "openapi.json"
    served = requests.get(f"{live_server.url}/api/v1/openapi.json", timeout=10)
    document.write_text(json.dumps(served.json()))
    config = where / "config.json"
    config.write_text(json.dumps({"post_hooks": []}))
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(document),
            "--output-path",
            str(where / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # A warning names a part of the document the generator could not turn into code.
    assert made.returncode == 0 and "Warning" not in made.stdout, made.stdout + made.stderr
    sys.path.insert(0, str(where))
    try:
        yield Generated(importlib.import_module(PACKAGE), live_server.url)
    finally:
        sys.path.remove(str(where))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def decoded(response: Any, status: int, model: Any) -> Any:
    """The answer's body, decoded (by the generated client) into `model`."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert isinstance(response.parsed, model), (type(response.parsed), response.content[:500])
    assert undecoded(response.parsed) == [], response.content[:500]
    return response.parsed


def undecoded(value: Any, where: str = "") -> list[str]:
    """Where a generated model holds a bare JSON object instead of a model: a field of several
    shapes (a nullable object is one) keeps the raw value when no shape decodes it."""
    if isinstance(value, dict):
        return [where or "."]
    if isinstance(value, list):
        return [found for i, item in enumerate(value) for found in undecoded(item, f"{where}[{i}]")]
    fields = getattr(type(value), "__attrs_attrs__", ())
    return [
        found
        for field in fields
        if field.name != "additional_properties"
        for found in undecoded(getattr(value, field.name), f"{where}.{field.name}")
    ] + [
        found
        for key, item in (getattr(value, "additional_properties", None) or {}).items()
        for found in undecoded(item, f"{where}[{key!r}]")
        if not isinstance(item, dict) or type(value).__name__ != "OtherEventData"
    ]


def problem(response: Any, status: int, gen: Generated) -> Any:
    found = decoded(response, status, gen.m.Problem)
    assert found.status == status
    return found


def sign_in(gen: Generated, anonymous: Any, email: str) -> Any:
    login = gen.m.Login(email=email, password=PASSWORD)
    pair = decoded(
        gen.api("auth", "login").sync_detailed(client=anonymous, body=login), 200, gen.m.TokenPair
    )
    return gen.signed_in(pair.access_token)


def test_a_couples_day_decodes_into_the_generated_models(
    generated: Generated, worker: Worker
) -> None:
    gen, m = generated, generated.m
    anonymous = gen.anonymous()
    people = {}
    for name in ("Ana", "Ben"):
        body = m.Register(
            email=f"{name.lower()}-{uuid.uuid4().hex[:8]}@generated.test",
            password=PASSWORD,
            display_name=name,
            timezone="Europe/Lisbon",
        )
        pair = decoded(
            gen.api("auth", "register").sync_detailed(client=anonymous, body=body), 201, m.TokenPair
        )
        assert pair.user.couple_id is None and pair.user.quiet_hours is None
        people[name] = (body, pair)
    ana_login, _ = people["Ana"]
    signed_in = decoded(
        gen.api("auth", "login").sync_detailed(
            client=anonymous, body=m.Login(email=ana_login.email, password=PASSWORD)
        ),
        200,
        m.TokenPair,
    )
    ana = gen.signed_in(signed_in.access_token)
    ben = gen.signed_in(people["Ben"][1].access_token)
    refreshed = gen.api("auth", "refresh_tokens").sync_detailed(
        client=anonymous, body=m.Refresh(refresh_token=people["Ben"][1].refresh_token)
    )
    ben = gen.signed_in(decoded(refreshed, 200, m.TokenPair).access_token)

    # Profile, before and after pairing.
    me = decoded(gen.api("me", "get_profile").sync_detailed(client=ana), 200, m.User)
    quiet = m.QuietHours(start="22:00", end="07:00")
    changed = gen.api("me", "update_profile").sync_detailed(
        client=ana, body=m.ProfileUpdate(quiet_hours=quiet, notes_on_lock_screen=True)
    )
    assert decoded(changed, 200, m.User).quiet_hours.start == "22:00"
    unpaired = gen.api("couple", "get_couple").sync_detailed(client=ana)
    assert problem(unpaired, 404, gen).code == m.ProblemCode.NOT_FOUND
    not_paired = gen.api("sync", "sync").sync_detailed(client=ana)
    problem(not_paired, 404, gen)

    # Pairing.
    invite = decoded(gen.api("couple", "create_invite").sync_detailed(client=ana), 201, m.Invite)
    shown = decoded(gen.api("couple", "get_invite").sync_detailed(client=ana), 200, m.Invite)
    assert (shown.code, shown.expires_at) == (invite.code, invite.expires_at)
    assert gen.api("couple", "withdraw_invite").sync_detailed(client=ben).status_code == 204
    wrong = gen.api("couple", "join_couple").sync_detailed(
        client=ben, body=m.Join(code="AAAA-AAAA")
    )
    assert problem(wrong, 422, gen).code == m.ProblemCode.VALIDATION_ERROR
    joined = gen.api("couple", "join_couple").sync_detailed(
        client=ben, body=m.Join(code=invite.code)
    )
    couple = decoded(joined, 201, m.Couple)
    decoded(gen.api("couple", "get_couple").sync_detailed(client=ana), 200, m.Couple)
    assert (
        decoded(gen.api("me", "get_profile").sync_detailed(client=ana), 200, m.User).couple_id
        == couple.id
    )
    assert me.id is not None
    renamed = gen.api("me", "update_profile").sync_detailed(
        client=ben, body=m.ProfileUpdate(display_name="Ben C.", timezone="America/Chicago")
    )
    assert decoded(renamed, 200, m.User).display_name == "Ben C."

    # Devices.
    device_body = m.DeviceCreate(platform=m.DeviceCreatePlatform.ANDROID, push_token="gen-token-1")
    device = decoded(
        gen.api("devices", "register_device").sync_detailed(client=ben, body=device_body),
        201,
        m.Device,
    )
    devices = decoded(
        gen.api("devices", "list_devices").sync_detailed(client=ben), 200, m.DeviceList
    )
    assert [d.id for d in devices.items] == [device.id]

    # A bid, delivered, seen and answered; one that expires.
    bid_body = m.BidCreate(client_id=uuid.uuid4(), kind=m.BidCreateKind.CONNECT, note="Tea?")
    bid = decoded(gen.api("bids", "send_bid").sync_detailed(client=ben, body=bid_body), 201, m.Bid)
    for step in ("mark_bid_delivered", "mark_bid_seen"):
        decoded(gen.api("bids", step).sync_detailed(bid.id, client=ana), 200, m.Bid)
    answer = m.BidResponseCreate(client_id=uuid.uuid4(), kind=m.BidResponseCreateKind.TOWARD)
    answered = gen.api("bids", "respond_to_bid").sync_detailed(bid.id, client=ana, body=answer)
    assert decoded(answered, 201, m.Bid).responses[0].kind == m.BidResponseKind.TOWARD
    decoded(gen.api("bids", "get_bid").sync_detailed(bid.id, client=ben), 200, m.Bid)
    decoded(gen.api("bids", "list_bids").sync_detailed(client=ana), 200, m.BidList)
    missing = gen.api("bids", "get_bid").sync_detailed(uuid.uuid4(), client=ana)
    problem(missing, 404, gen)
    twice = gen.api("bids", "respond_to_bid").sync_detailed(
        bid.id,
        client=ben,
        body=m.BidResponseCreate(client_id=uuid.uuid4(), kind=m.BidResponseCreateKind.TOWARD),
    )
    assert problem(twice, 403, gen).code == m.ProblemCode.FORBIDDEN

    # A repair conversation, from start to resolved.
    repair = decoded(
        gen.api("repairs", "start_repair").sync_detailed(
            client=ana, body=m.RepairCreate(client_id=uuid.uuid4(), bid_id=bid.id)
        ),
        201,
        m.Repair,
    )
    message = m.RepairMessageCreate(
        client_id=uuid.uuid4(),
        body="When you left the room I felt alone.",
        step=m.RepairMessageCreateStepType1.WHAT_I_FELT,
        emotions=[m.RepairMessageCreateEmotionsType0Item.HURT],
        written_at=datetime.now(UTC) - timedelta(minutes=1),
    )
    decoded(
        gen.api("repairs", "write_repair_message").sync_detailed(
            repair.id, client=ben, body=message
        ),
        201,
        m.RepairMessage,
    )
    decoded(
        gen.api("repairs", "mark_repair_read").sync_detailed(
            repair.id, client=ana, body=m.ReadReceipt(seq=1)
        ),
        200,
        m.Repair,
    )
    decoded(
        gen.api("repairs", "pause_repair").sync_detailed(
            repair.id, client=ana, body=m.Pause(minutes=20)
        ),
        200,
        m.Repair,
    )
    for tag_step, who in (("resume_repair", ana), ("resolve_repair", ana), ("resolve_repair", ben)):
        decoded(gen.api("repairs", tag_step).sync_detailed(repair.id, client=who), 200, m.Repair)
    decoded(gen.api("repairs", "get_repair").sync_detailed(repair.id, client=ben), 200, m.Repair)
    decoded(gen.api("repairs", "list_repairs").sync_detailed(client=ben), 200, m.RepairList)
    decoded(
        gen.api("repairs", "list_repair_messages").sync_detailed(repair.id, client=ana),
        200,
        m.RepairMessageList,
    )
    invalid = gen.api("repairs", "write_repair_message").sync_detailed(
        repair.id, client=ben, body=m.RepairMessageCreate(client_id=uuid.uuid4(), body=" ")
    )
    assert problem(invalid, 422, gen).errors is not None

    # An A.R.E. check-in, answered by both.
    for who in (ana, ben):
        scores = m.CheckInCreate(client_id=uuid.uuid4(), accessible=4, responsive=3, engaged=5)
        decoded(
            gen.api("insights", "answer_check_in").sync_detailed(client=who, body=scores),
            201,
            m.CheckInRound,
        )
    decoded(
        gen.api("insights", "get_current_check_in").sync_detailed(client=ana), 200, m.CheckInRound
    )
    decoded(gen.api("insights", "list_check_ins").sync_detailed(client=ana), 200, m.CheckInList)

    # A bid that expires unanswered.
    lonely = m.BidCreate(client_id=uuid.uuid4(), kind=m.BidCreateKind.COMFORT)
    decoded(gen.api("bids", "send_bid").sync_detailed(client=ben, body=lonely), 201, m.Bid)
    clock.freeze(datetime.now(UTC) + timedelta(days=2))
    assert worker.run_once().expired_bids == 1
    ana, ben = (sign_in(gen, anonymous, people[name][0].email) for name in ("Ana", "Ben"))

    # Insights and sync.
    decoded(gen.api("insights", "get_insights").sync_detailed(client=ana), 200, m.Insights)
    page = decoded(
        gen.api("sync", "sync").sync_detailed(client=ana, limit=1000, couple_id=couple.id),
        200,
        m.SyncPage,
    )
    assert not page.has_more and len(page.events) == page.next_
    updated = page.events[1]
    assert isinstance(updated, m.CouplePartnerUpdatedEvent), type(updated)
    assert isinstance(updated.data, m.Partner) and updated.data.display_name == "Ben C."

    # Export, delete a device, unpair, sign out.
    exported = decoded(gen.api("me", "export_data").sync_detailed(client=ben), 200, m.Export)
    assert exported.devices[0].platform == "android"
    assert exported.bids_sent[0].note == "Tea?"
    deleted = gen.api("devices", "delete_device").sync_detailed(device.id, client=ben)
    assert deleted.status_code == 204
    problem(gen.api("devices", "delete_device").sync_detailed(device.id, client=ben), 404, gen)
    assert gen.api("couple", "unpair").sync_detailed(client=ben).status_code == 204
    out = gen.api("auth", "logout").sync_detailed(
        client=anonymous, body=m.Refresh(refresh_token=signed_in.refresh_token)
    )
    assert out.status_code == 204
    problem(
        gen.api("me", "get_profile").sync_detailed(client=gen.signed_in("no.such.token")), 401, gen
    )


def test_an_event_of_a_type_not_yet_named_decodes_as_other_event(
    generated: Generated,
    client: ApiClient,
    app: Flask,
    phone: Callable[[str | None], Phone],
) -> None:
    """docs/mobile.md: new event types may come; a phone skips one it does not know and still
    advances its cursor. The document says so (`OtherEvent`), so a generated client decodes a
    page holding one instead of failing on the whole page, and the known ones keep their
    shapes."""
    new_type = "bid.reacted"
    assert new_type not in EVENT_TYPES
    ana, ben = client.couple()
    ana_phone = phone(ana.access_token)
    sent = client.post(
        "/api/v1/bids", as_=ben, json={"client_id": str(uuid.uuid4()), "kind": "share"}
    )
    assert sent.status_code == 201, sent.text
    couple_id = uuid.UUID(client.get("/api/v1/couple", as_=ana).json()["id"])
    with app.app_context():  # as a later version of the service would write it
        couple = db.session.get(Couple, couple_id)
        assert couple is not None
        events.record(db.session, couple, new_type, {"bid_id": sent.json()["id"], "emoji": "*"})
        db.session.commit()

    # The socket's envelope and the sync page (checked by the `client` fixture) are documented.
    pushed = ana_phone.wait_for(new_type)
    doc = document(client.base_url)
    shape = doc.doc["components"]["schemas"]["SyncPage"]["properties"]["events"]["items"]
    assert doc.body_faults(shape, pushed) == []
    assert client.get("/api/v1/sync", as_=ana).status_code == 200

    m = generated.m
    page = decoded(
        generated.api("sync", "sync").sync_detailed(client=generated.signed_in(ana.access_token)),
        200,
        m.SyncPage,
    )
    shapes = [(type(event).__name__, str(event.type_)) for event in page.events]
    assert shapes == [
        ("CouplePairedEvent", "couple.paired"),
        ("BidEvent", "bid.created"),
        ("OtherEvent", new_type),
    ]
    assert page.next_ == page.events[-1].cursor == pushed["cursor"]


def test_a_pattern_of_a_name_not_yet_known_decodes(generated: Generated, client: ApiClient) -> None:
    """docs/mobile.md: treat an unknown pattern `name` as null. A generated model must decode
    it to let the phone do so, instead of failing on the whole insights answer."""
    ana, _ = client.couple()
    insights = client.get("/api/v1/insights", as_=ana).json()
    insights["pattern"] = {
        "name": "a_cycle_named_later",
        "reaching_partner_id": ana.id,
        "withdrawing_partner_id": str(uuid.uuid4()),
        "message": "Over this period ...",
        "evidence": {
            "bids": 12,
            "share_sent_by_reaching_partner": 0.75,
            "turn_toward_rate_of_other": None,
            "median_response_seconds_of_other": 5400,
        },
    }
    parsed = generated.m.Insights.from_dict(insights)
    assert undecoded(parsed) == []
    assert isinstance(parsed.pattern, generated.m.Pattern)
    assert parsed.pattern.name == "a_cycle_named_later"

"""Pairing with invite codes, the couple, unpairing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from service.clock import clock
from service.domain import invites
from tests.support.client import ApiClient
from tests.support.server import LiveServer


def test_invite_and_join_pair_two_people(client: ApiClient) -> None:
    ana, ben = client.register("Ana", "Europe/Berlin"), client.register("Ben", "America/Chicago")
    invite = client.post("/api/v1/couple/invites", as_=ana)
    assert invite.status_code == 201
    code = invite.json()["code"]
    assert len(code) == 9
    assert code[4] == "-"
    assert invite.json()["expires_at"].endswith("Z")

    joined = client.post("/api/v1/couple/join", as_=ben, json={"code": code.lower()})
    assert joined.status_code == 201, joined.text
    couple = joined.json()
    assert couple["partner"] == {"id": ana.id, "display_name": "Ana", "timezone": "Europe/Berlin"}

    for_ana = client.get("/api/v1/couple", as_=ana).json()
    for_ben = client.get("/api/v1/couple", as_=ben).json()
    assert for_ana["id"] == for_ben["id"] == couple["id"]
    assert for_ana["partner"]["id"] == ben.id
    assert for_ben == couple
    assert client.get("/api/v1/me", as_=ana).json()["couple_id"] == couple["id"]


def test_codes_are_forgiving_to_type(client: ApiClient) -> None:
    ana, ben = client.register("Ana"), client.register("Ben")
    code = client.post("/api/v1/couple/invites", as_=ana).json()["code"]
    typed = f" {code.replace('-', ' ').lower()} ".replace("0", "o").replace("1", "l")
    assert client.post("/api/v1/couple/join", as_=ben, json={"code": typed}).status_code == 201


@pytest.mark.parametrize(
    ("before", "dash", "after"),
    [
        ("", "-", "\n"),  # pasted with the message's line break
        ("\t", "\u2010", ""),  # a tab; a typographic hyphen
        ("\u00a0", "\u2013", "\u00a0"),  # no-break spaces around it; an en dash
        ("", "\u2212", "\u200b"),  # a minus sign; a zero-width space
    ],
)
def test_a_pasted_code_joins(client: ApiClient, before: str, dash: str, after: str) -> None:
    """docs/mobile.md: the server ignores dashes and spaces, so a phone passes on what the user
    typed or pasted. A code copied from a message comes with a line break, no-break spaces or
    a typographic dash (a text app's smart punctuation): they were refused as a wrong code."""
    ana, ben = client.register("Ana"), client.register("Ben")
    code = client.post("/api/v1/couple/invites", as_=ana).json()["code"]
    pasted = f"{before}{code[:4]}{dash}{code[5:]}{after}"
    joined = client.post("/api/v1/couple/join", as_=ben, json={"code": pasted})
    assert joined.status_code == 201, joined.text


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("", "."),  # the end of "my code is AD6T-DKWE."
        ("\u201c", "\u201d"),  # in a text app's quotes
        ('"', '",'),  # in plain quotes, then a comma
        ("(", ")"),
        ("\u300c", "\u3002"),  # a Japanese corner bracket; an ideographic full stop
    ],
)
def test_a_code_copied_with_the_punctuation_around_it_joins(
    client: ApiClient, before: str, after: str
) -> None:
    """Copied out of a sentence ("my code is AD6T-DKWE."), a code comes with the full stop or
    the quotes around it, which no code contains: it was refused as a wrong one."""
    ana, ben = client.register("Ana"), client.register("Ben")
    code = client.post("/api/v1/couple/invites", as_=ana).json()["code"]
    joined = client.post("/api/v1/couple/join", as_=ben, json={"code": before + code + after})
    assert joined.status_code == 201, joined.text


def test_a_code_typed_in_full_width_joins(client: ApiClient) -> None:
    """A Chinese or Japanese keyboard in full-width mode types the letters, digits and dash of
    a code as their full-width forms (U+FF01-U+FF5E): the code was refused as a wrong one."""
    ana, ben = client.register("Ana"), client.register("Ben")
    code = client.post("/api/v1/couple/invites", as_=ana).json()["code"]
    typed = "".join(chr(ord(c) + 0xFEE0) for c in code.lower())
    joined = client.post("/api/v1/couple/join", as_=ben, json={"code": typed})
    assert joined.status_code == 201, joined.text


@pytest.mark.parametrize("zero", ["\u0660", "\u06f0", "\u0966"])
def test_a_code_typed_with_another_scripts_digits_joins(
    client: ApiClient, monkeypatch: pytest.MonkeyPatch, zero: str
) -> None:
    """An Arabic, Persian or Hindi keyboard types digits as its own (Arabic-Indic, Persian
    or Devanagari: U+0663 for 3): the code was refused as a wrong one."""
    monkeypatch.setattr(invites, "new_code", lambda: "7KQ2M9XD")
    ana, ben = client.register("Ana"), client.register("Ben")
    code = client.post("/api/v1/couple/invites", as_=ana).json()["code"]
    typed = "".join(chr(ord(zero) + int(c)) if c.isdigit() else c for c in code)
    joined = client.post("/api/v1/couple/join", as_=ben, json={"code": typed})
    assert joined.status_code == 201, joined.text


@pytest.mark.parametrize(
    "typed",
    [
        "\u0420\u0410\u0421 4 \u0422\u0415\u0425\u041d",  # Cyrillic capitals
        "\u0440\u0430\u0441-4\u0442\u0435\u0445\u043d",  # Cyrillic small letters
        "\u03a1\u0391C4-\u03a4\u0395\u03a7\u0397",  # Greek capitals
        "\u0420A\u04214TEX\u041d",  # some letters typed before switching the layout
    ],
)
def test_a_code_typed_in_a_cyrillic_or_greek_layout_joins(
    client: ApiClient, monkeypatch: pytest.MonkeyPatch, typed: str
) -> None:
    """PAC4-TEXH typed on a phone left in a Russian, Ukrainian or Greek layout: its letters
    look the same but are that alphabet's (Cyrillic ER for P), and the code was refused as a
    wrong one."""
    monkeypatch.setattr(invites, "new_code", lambda: "PAC4TEXH")
    ana, ben = client.register("Ana"), client.register("Ben")
    assert client.post("/api/v1/couple/invites", as_=ana).json()["code"] == "PAC4-TEXH"
    joined = client.post("/api/v1/couple/join", as_=ben, json={"code": typed})
    assert joined.status_code == 201, joined.text


def test_a_stranger_sees_no_couple(client: ApiClient) -> None:
    client.couple()
    stranger = client.register("Sol")
    response = client.get("/api/v1/couple", as_=stranger)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert client.delete("/api/v1/couple", as_=stranger).status_code == 404


def test_an_invite_is_single_use(client: ApiClient) -> None:
    ana, ben, cat = client.register("Ana"), client.register("Ben"), client.register("Cat")
    code = client.post("/api/v1/couple/invites", as_=ana).json()["code"]
    assert client.post("/api/v1/couple/join", as_=ben, json={"code": code}).status_code == 201
    reused = client.post("/api/v1/couple/join", as_=cat, json={"code": code})
    assert reused.status_code == 422
    assert reused.json()["errors"]["code"]
    assert client.get("/api/v1/couple", as_=cat).status_code == 404
    assert client.get("/api/v1/couple", as_=ana).json()["partner"]["id"] == ben.id


def test_an_invite_expires(client: ApiClient) -> None:
    ana, ben = client.register("Ana"), client.register("Ben")
    code = client.post("/api/v1/couple/invites", as_=ana).json()["code"]
    clock.freeze(clock.now() + timedelta(days=1, minutes=1))
    # Keep the joiner's access token fresh under the moved clock.
    ben_fresh = client.post(
        "/api/v1/auth/login", json={"email": ben.email, "password": ben.password}
    )
    token = ben_fresh.json()["access_token"]
    expired = client.post(
        "/api/v1/couple/join", json={"code": code}, headers={"Authorization": f"Bearer {token}"}
    )
    assert expired.status_code == 422


def test_a_new_invite_replaces_the_old_one(client: ApiClient) -> None:
    ana, ben = client.register("Ana"), client.register("Ben")
    old = client.post("/api/v1/couple/invites", as_=ana).json()["code"]
    new = client.post("/api/v1/couple/invites", as_=ana).json()["code"]
    assert client.post("/api/v1/couple/join", as_=ben, json={"code": old}).status_code == 422
    assert client.post("/api/v1/couple/join", as_=ben, json={"code": new}).status_code == 201


def test_a_join_sent_again_after_its_answer_was_lost_gets_the_couple(client: ApiClient) -> None:
    """The phone's join paired Ben, but its answer was lost on the way (a train tunnel), and the
    phone sent the same code again: Ben was told 409 "You are already paired. Unpair first to
    join someone else.", pointing him at an unpair. A join sent again by the person the code
    paired, while that couple lasts, answers the couple again (200), as a retried write does."""
    ana, ben = client.register("Ana"), client.register("Ben")
    code = client.post("/api/v1/couple/invites", as_=ana).json()["code"]
    joined = client.post("/api/v1/couple/join", as_=ben, json={"code": code})
    assert joined.status_code == 201
    again = client.post("/api/v1/couple/join", as_=ben, json={"code": code.lower()})
    assert again.status_code == 200, again.text
    assert again.json() == joined.json()
    events = client.get("/api/v1/sync?since=0", as_=ana).json()["events"]
    assert [event["type"] for event in events] == ["couple.paired"]
    # Anyone else's code, or the maker's own, is still a paired person's join: 409.
    cats = client.post("/api/v1/couple/invites", as_=client.register("Cat")).json()["code"]
    assert client.post("/api/v1/couple/join", as_=ben, json={"code": cats}).status_code == 409
    assert client.post("/api/v1/couple/join", as_=ana, json={"code": code}).status_code == 409
    # Once they unpair, the code is spent.
    assert client.delete("/api/v1/couple", as_=ana).status_code == 204
    late = client.post("/api/v1/couple/join", as_=ben, json={"code": code})
    assert late.status_code == 422, late.text


def test_invites_are_limited_per_account(server_with: Callable[..., LiveServer]) -> None:
    """Each invite is a row (only the newest code works): an account makes RATELIMIT_JOIN."""
    client = ApiClient(server_with(RATELIMIT_JOIN="2 per hour").url)
    ana, ben = client.register("Ana"), client.register("Ben")
    made = [client.post("/api/v1/couple/invites", as_=ana) for _ in range(3)]
    assert [response.status_code for response in made] == [201, 201, 429]
    assert made[2].json()["code"] == "rate_limited"
    assert client.post("/api/v1/couple/invites", as_=ben).status_code == 201  # per account
    code = made[1].json()["code"]
    assert client.post("/api/v1/couple/join", as_=ben, json={"code": code}).status_code == 201


def test_nobody_joins_a_second_couple(client: ApiClient) -> None:
    ana, ben = client.couple()
    cat, dan = client.register("Cat"), client.register("Dan")
    # A paired person can neither invite nor join.
    assert client.post("/api/v1/couple/invites", as_=ana).status_code == 409
    code = client.post("/api/v1/couple/invites", as_=cat).json()["code"]
    joined = client.post("/api/v1/couple/join", as_=ben, json={"code": code})
    assert joined.status_code == 409
    assert joined.json()["code"] == "conflict"
    # The code was not spent by the refused attempt.
    assert client.post("/api/v1/couple/join", as_=dan, json={"code": code}).status_code == 201
    assert client.get("/api/v1/couple", as_=ben).json()["partner"]["id"] == ana.id


def test_a_code_stops_working_once_its_maker_pairs_with_someone_else(
    client: ApiClient,
) -> None:
    """Ana made a code for Ben, then typed Cat's instead: Ben is told her code is no longer
    valid, and it stays so after Ana and Cat unpair (Ana did not ask Ben again)."""
    ana, ben, cat = client.register("Ana"), client.register("Ben"), client.register("Cat")
    anas_code = client.post("/api/v1/couple/invites", as_=ana).json()["code"]
    client.pair(cat, ana)
    late = client.post("/api/v1/couple/join", as_=ben, json={"code": anas_code})
    assert late.status_code == 422
    assert client.delete("/api/v1/couple", as_=ana).status_code == 204
    later = client.post("/api/v1/couple/join", as_=ben, json={"code": anas_code})
    assert later.status_code == 422, later.text
    assert "code" in later.json()["errors"]
    assert client.get("/api/v1/couple", as_=ben).status_code == 404
    # A code Ana makes now works.
    client.pair(ana, ben)
    assert client.get("/api/v1/couple", as_=ben).json()["partner"]["id"] == ana.id


def test_own_code_and_junk_codes_are_refused(client: ApiClient) -> None:
    ana = client.register("Ana")
    code = client.post("/api/v1/couple/invites", as_=ana).json()["code"]
    own = client.post("/api/v1/couple/join", as_=ana, json={"code": code})
    assert own.status_code == 422
    for junk in ("", "x" * 21):
        response = client.post("/api/v1/couple/join", as_=ana, json={"code": junk})
        assert response.status_code == 422
    assert (
        client.post("/api/v1/couple/join", as_=ana, json={"code": "ZZZZ-ZZZZ"}).status_code == 422
    )
    # Ana's own code still works for someone else.
    ben = client.register("Ben")
    assert client.post("/api/v1/couple/join", as_=ben, json={"code": code}).status_code == 201


def test_unpair_ends_the_couple_for_both(client: ApiClient) -> None:
    ana, ben = client.couple()
    assert client.delete("/api/v1/couple", as_=ben).status_code == 204
    assert client.get("/api/v1/couple", as_=ana).status_code == 404
    assert client.get("/api/v1/couple", as_=ben).status_code == 404
    assert client.get("/api/v1/me", as_=ana).json()["couple_id"] is None
    # Both are free to pair again.
    client.pair(ana, client.register("Cat"))
    assert client.delete("/api/v1/couple", as_=ben).status_code == 404


def test_an_unpair_sent_again_after_a_new_pairing_leaves_the_new_couple(
    client: ApiClient,
) -> None:
    """Ana's tablet unpaired her from Ben, but its answer was lost, and the tablet sent the
    unpair again once it was back online, after Ana had paired with Cat on her phone: the
    retry ended the couple with Cat. An unpair that names its couple (`couple_id`) ends that
    couple or none: 404 once it has ended, whoever the caller is paired with now."""
    ana, ben = client.couple()
    with_ben = client.get("/api/v1/couple", as_=ana).json()["id"]
    assert client.delete(f"/api/v1/couple?couple_id={with_ben}", as_=ana).status_code == 204
    cat = client.register("Cat")
    with_cat = client.pair(cat, ana)["id"]
    again = client.delete(f"/api/v1/couple?couple_id={with_ben}", as_=ana)
    assert again.status_code == 404, again.text
    assert again.json()["code"] == "not_found"
    assert client.get("/api/v1/couple", as_=cat).json()["id"] == with_cat
    junk = client.delete("/api/v1/couple?couple_id=not-a-uuid", as_=ana)
    assert junk.status_code == 422 and "couple_id" in junk.json()["errors"]
    assert client.delete(f"/api/v1/couple?couple_id={with_cat}", as_=ana).status_code == 204
    assert client.get("/api/v1/couple", as_=cat).status_code == 404
    assert client.get("/api/v1/couple", as_=ben).status_code == 404


def test_the_inviter_reads_back_the_code_that_still_works(client: ApiClient) -> None:
    """Ana's app restarted while she waited for Ben: her code was gone from the screen and
    nothing gave it back but a new one. `GET /couple/invites` shows her live code, to her."""
    ana, ben = client.register("Ana"), client.register("Ben")
    none_yet = client.get("/api/v1/couple/invites", as_=ana)
    assert none_yet.status_code == 404
    assert none_yet.json()["code"] == "not_found"
    client.post("/api/v1/couple/invites", as_=ana)
    made = client.post("/api/v1/couple/invites", as_=ana).json()
    assert client.get("/api/v1/couple/invites", as_=ana).json() == made
    # Only its maker sees it: anyone else is asked about their own.
    assert client.get("/api/v1/couple/invites", as_=ben).status_code == 404
    assert (
        client.post("/api/v1/couple/join", as_=ben, json={"code": made["code"]}).status_code == 201
    )
    for paired in (ana, ben):
        refused = client.get("/api/v1/couple/invites", as_=paired)
        assert refused.status_code == 409
        assert refused.json()["code"] == "conflict"


def test_a_code_that_no_longer_works_is_not_read_back(client: ApiClient) -> None:
    """Expired, or spent by its maker pairing with someone else (it stays so after they
    unpair): a code a join would refuse is not shown as if it worked."""
    ana, cat = client.register("Ana"), client.register("Cat")
    client.post("/api/v1/couple/invites", as_=ana)
    client.pair(cat, ana)
    assert client.delete("/api/v1/couple", as_=ana).status_code == 204
    assert client.get("/api/v1/couple/invites", as_=ana).status_code == 404
    client.post("/api/v1/couple/invites", as_=ana)
    clock.freeze(clock.now() + timedelta(days=1, minutes=1))
    expired = client.get("/api/v1/couple/invites", as_=client.fresh(ana))
    assert expired.status_code == 404


def test_a_withdrawn_code_pairs_nobody(client: ApiClient) -> None:
    ana, ben = client.register("Ana"), client.register("Ben")
    code = client.post("/api/v1/couple/invites", as_=ana).json()["code"]
    assert client.delete("/api/v1/couple/invites", as_=ana).status_code == 204
    assert client.get("/api/v1/couple/invites", as_=ana).status_code == 404
    refused = client.post("/api/v1/couple/join", as_=ben, json={"code": code})
    assert refused.status_code == 422
    assert refused.json()["errors"]["code"]
    # Sent again (its answer lost), or with nothing to withdraw: done already.
    assert client.delete("/api/v1/couple/invites", as_=ana).status_code == 204
    assert client.delete("/api/v1/couple/invites", as_=ben).status_code == 204
    # Withdrawing touches only the caller's own code.
    bens_code = client.post("/api/v1/couple/invites", as_=ben).json()["code"]
    assert client.delete("/api/v1/couple/invites", as_=ana).status_code == 204
    joined = client.post("/api/v1/couple/join", as_=ana, json={"code": bens_code})
    assert joined.status_code == 201
    paired = client.delete("/api/v1/couple/invites", as_=ben)
    assert paired.status_code == 409
    assert paired.json()["code"] == "conflict"

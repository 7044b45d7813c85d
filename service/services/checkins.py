"""A.R.E. check-ins with a blind reveal: answers stay hidden until both partners answered."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from schemas.base import iso
from service.clock import clock
from service.domain.errors import Conflict, NotFound, invalid, of_an_ended_pairing
from service.models import CheckInAnswer, CheckInRound, Couple, User
from service.services import events, pairing

SCORES = ("accessible", "responsive", "engaged")


def _open_round(session: Session, couple: Couple) -> CheckInRound:
    current = session.scalar(
        select(CheckInRound)
        .where(CheckInRound.couple_id == couple.id)
        .order_by(CheckInRound.number.desc())
        .limit(1)
    )
    if current is not None and current.revealed_at is None:
        return current
    number = (current.number if current else 0) + 1
    created = CheckInRound(couple_id=couple.id, number=number, opened_at=clock.now())
    session.add(created)
    session.flush()
    return created


def _scores(answer: CheckInAnswer | None) -> dict[str, Any] | None:
    if answer is None:
        return None
    return {name: getattr(answer, name) for name in SCORES} | {"answered_at": answer.created_at}


# A round's answers by who gave them (None: an account deleted since).
ByUser = dict[uuid.UUID | None, CheckInAnswer]


def view(
    session: Session,
    round_: CheckInRound,
    user: User,
    couple: Couple,
    answers: ByUser | None = None,
) -> dict[str, Any]:
    """The round as this partner may see it: the partner's answers only after the reveal.
    `answers` by user, when read already (`_answers_of`)."""
    if answers is None:
        answers = _answers_of(session, [round_.id]).get(round_.id, {})
    partner_id = couple.partner_of(user.id)
    partner_answer = answers.get(partner_id) if partner_id else None
    revealed = round_.revealed_at is not None
    return {
        "id": round_.id,
        "number": round_.number,
        "opened_at": round_.opened_at,
        "revealed_at": round_.revealed_at,
        "you": _scores(answers.get(user.id)),
        "partner_answered": partner_answer is not None,
        "partner": _scores(partner_answer) if revealed else None,
    }


def _answers_of(session: Session, round_ids: list[uuid.UUID]) -> dict[uuid.UUID, ByUser]:
    """The answers of these rounds, by round and then by user, in one read."""
    answers: dict[uuid.UUID, ByUser] = {}
    if round_ids:
        query = select(CheckInAnswer).where(CheckInAnswer.round_id.in_(round_ids))
        for a in session.scalars(query):
            answers.setdefault(a.round_id, {})[a.user_id] = a
    return answers


def current(session: Session, user: User) -> dict[str, Any]:
    couple = pairing.require_couple(session, user)
    round_ = session.scalar(
        select(CheckInRound)
        .where(CheckInRound.couple_id == couple.id)
        .order_by(CheckInRound.number.desc())
        .limit(1)
    )
    if round_ is None:
        return {
            "id": None,
            "number": 0,
            "opened_at": None,
            "revealed_at": None,
            "you": None,
            "partner_answered": False,
            "partner": None,
        }
    return view(session, round_, user, couple)


@dataclass(frozen=True)
class Answered:
    """The round as this partner may see it, and whether this call stored the answer."""

    round: dict[str, Any]
    created: bool


def answer(
    session: Session,
    user: User,
    client_id: uuid.UUID,
    scores: dict[str, int],
    *,
    couple_id: uuid.UUID | None = None,
) -> Answered:
    """Answer the open round; a retry with the same `client_id` returns its round again. With
    `couple_id` (the couple the phone wrote it in), an answer of an ended pairing is refused."""
    couple = pairing.require_couple(session, user)
    # One answer at a time per couple; read again once locked: an unpair that held the lock
    # has ended the couple, and a retry must not show the ended couple's round (404).
    session.get(Couple, couple.id, with_for_update=True, populate_existing=True)
    if couple.ended_at is not None:
        raise NotFound("You are not paired.")
    if couple_id is not None and couple_id != couple.id:
        raise of_an_ended_pairing("answer")
    # Looked up under the couple's lock: a racing retry that won is visible by now.
    earlier = session.scalar(
        select(CheckInAnswer).where(
            CheckInAnswer.user_id == user.id, CheckInAnswer.client_id == client_id
        )
    )
    if earlier is not None:
        answered = session.get(CheckInRound, earlier.round_id)
        if answered is None or answered.couple_id != couple.id:
            raise Conflict("This client_id was used in an earlier pairing: generate a new one.")
        if any(getattr(earlier, name) != scores[name] for name in SCORES):
            # Another answer, not a retry: answered with the round, the phone would take it
            # as stored.
            raise Conflict("This client_id was used for another answer: generate a new one.")
        result = view(session, answered, user, couple)
        session.commit()
        return Answered(result, created=False)
    round_ = _open_round(session, couple)
    exists = session.scalar(
        select(func.count()).where(
            CheckInAnswer.round_id == round_.id, CheckInAnswer.user_id == user.id
        )
    )
    if exists:
        raise Conflict("You have answered this check-in; your partner's turn.")
    now = clock.now()
    session.add(
        CheckInAnswer(
            round_id=round_.id, user_id=user.id, client_id=client_id, created_at=now, **scores
        )
    )
    session.flush()
    count = session.scalar(select(func.count()).where(CheckInAnswer.round_id == round_.id))
    if count == 2:
        round_.revealed_at = now
        # Each partner's phone saves the round from this event as GET /checkins shows it.
        both = {
            str(a.user_id): {name: getattr(a, name) for name in SCORES}
            | {"answered_at": iso(a.created_at)}
            for a in session.scalars(
                select(CheckInAnswer).where(CheckInAnswer.round_id == round_.id)
            )
        }
        events.record(
            session,
            couple,
            "checkin.revealed",
            {**_round_event(round_), "revealed_at": iso(now), "answers": both},
        )
    else:
        # The partner learns that an answer waits for them, never what it says.
        events.record(
            session, couple, "checkin.answered", {**_round_event(round_), "user_id": str(user.id)}
        )
    result = view(session, round_, user, couple)
    session.commit()
    return Answered(result, created=True)


def _round_event(round_: CheckInRound) -> dict[str, Any]:
    """What every check-in event says of its round."""
    return {"round_id": str(round_.id), "number": round_.number, "opened_at": iso(round_.opened_at)}


def history(session: Session, user: User, limit: int, before: str | None) -> dict[str, Any]:
    """Revealed rounds, newest first, `limit` a page; `next` is the `before` of the next page."""
    couple = pairing.require_couple(session, user)
    query = select(CheckInRound).where(
        CheckInRound.couple_id == couple.id, CheckInRound.revealed_at.is_not(None)
    )
    if before:  # an empty `before` asks for the first page, as on every other list
        query = query.where(CheckInRound.number < _round_number(before))
    rounds = list(session.scalars(query.order_by(CheckInRound.number.desc()).limit(limit + 1)))
    page = rounds[:limit]
    answers = _answers_of(session, [r.id for r in page])
    return {
        "items": [view(session, r, user, couple, answers.get(r.id, {})) for r in page],
        "next": str(page[-1].number) if len(rounds) > limit else None,
    }


def _round_number(before: str) -> int:
    """A round's number as `next` gives it: ASCII digits only ("²" is a digit to Python), and
    small enough for the database's integer."""
    if before.isascii() and before.isdigit() and len(before) <= 9:
        return int(before)
    raise invalid("before", "Not a page cursor from this API: pass `next` as is.")

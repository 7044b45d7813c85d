"""The couple's insights and A.R.E. check-ins."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from schemas.base import PageArgsSchema
from schemas.insights import (
    CheckInCreateSchema,
    CheckInListSchema,
    CheckInRoundSchema,
    InsightsArgsSchema,
    InsightsSchema,
)
from service.api.auth import auth_required, current_user, documented_member
from service.api.blueprint import Blueprint
from service.extensions import db
from service.services import checkins, insights

PREFIX = ""
blp = Blueprint("insights", __name__, description="The couple's insights and check-ins")
member = documented_member(blp)


@blp.route("/insights")
class Insights(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="getInsights")
    @blp.arguments(InsightsArgsSchema, location="query")
    @blp.response(200, InsightsSchema)
    @blp.problem(404, "Not paired")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """How the two of you reach for and turn toward each other (7, 30 or 90 days)"""
        return insights.for_couple(db.session, current_user(), args["days"])


@blp.route("/checkins")
class CheckIns(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="answerCheckIn")
    @blp.arguments(CheckInCreateSchema)
    @blp.response(201, CheckInRoundSchema)
    @blp.alt_response(200, schema=CheckInRoundSchema, description="A retry of an earlier answer")
    @blp.problem(404, "Not paired")
    @blp.problem(
        409,
        "Already answered this round, the client_id was used in an earlier pairing, or "
        "`couple_id` names a pairing that has ended",
    )
    def post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Answer the A.R.E. check-in (1-5 each); the partner's answers show once both answered"""
        client_id, couple_id = body.pop("client_id"), body.pop("couple_id")
        answered = checkins.answer(db.session, current_user(), client_id, body, couple_id=couple_id)
        return answered.round, 201 if answered.created else 200

    @member
    @blp.doc(operationId="listCheckIns")
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, CheckInListSchema)
    @blp.problem(404, "Not paired")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Revealed check-ins, newest first"""
        return checkins.history(db.session, current_user(), args["limit"], args["before"])


@blp.route("/checkins/current")
class CurrentCheckIn(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="getCurrentCheckIn")
    @blp.response(200, CheckInRoundSchema)
    @blp.problem(404, "Not paired")
    def get(self) -> dict[str, Any]:
        """The current check-in round as you may see it"""
        return checkins.current(db.session, current_user())

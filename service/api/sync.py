"""The couple's event stream, for catching up after a reconnect."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from schemas.sync import SyncArgsSchema, SyncPageSchema
from service.api.auth import auth_required, current_member, documented_member
from service.api.blueprint import Blueprint
from service.domain.errors import NotFound
from service.extensions import db
from service.services import events

PREFIX = "/sync"
blp = Blueprint("sync", __name__, description="Catch up on the couple's events")
member = documented_member(blp)


@blp.route("")
class Sync(MethodView):
    decorators = [auth_required]

    @member
    @blp.arguments(SyncArgsSchema, location="query")
    @blp.response(200, SyncPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Events after `since`, in cursor order; store the last cursor applied"""
        couple_id = current_member().couple_id
        if couple_id is None:
            raise NotFound("You are not paired.")
        rows, has_more = events.page(db.session, couple_id, args["since"], args["limit"])
        items = [events.envelope(row) for row in rows]
        return {
            "events": items,
            "next": items[-1]["cursor"] if items else args["since"],
            "has_more": has_more,
        }

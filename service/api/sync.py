"""The couple's event stream, for catching up after a reconnect."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from schemas.sync import SyncArgsSchema, SyncPageSchema
from service.api.auth import auth_required, current_member, documented_member
from service.api.blueprint import Blueprint
from service.domain.errors import Conflict, NotFound
from service.extensions import db
from service.services import events

PREFIX = "/sync"
blp = Blueprint("sync", __name__, description="Catch up on the couple's events")
member = documented_member(blp)


@blp.route("")
class Sync(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="sync")
    @blp.arguments(SyncArgsSchema, location="query")
    @blp.response(200, SyncPageSchema)
    @blp.problem(404, "Not paired, or no longer in the `couple_id` asked for")
    @blp.problem(409, "`since` is a cursor of an earlier pairing")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Events after `since`, in cursor order; store the last cursor applied"""
        couple_id, since = current_member().couple_id, args["since"]
        if couple_id is None:
            raise NotFound("You are not paired.")
        if args.get("couple_id") not in (None, couple_id):
            raise NotFound("You are not paired in that couple any more: see GET /couple.")
        rows, has_more = events.page(db.session, couple_id, since, args["limit"])
        if not rows and since > 0 and since > events.head(db.session, couple_id):
            raise Conflict(
                f"since={since} is beyond this couple's last event: it is a cursor of an earlier"
                " pairing. Start this couple's stream again from since=0."
            )
        stream = str(couple_id)
        items = [events.envelope(row, stream) for row in rows]
        return {
            "couple_id": stream,
            "events": items,
            "next": items[-1]["cursor"] if items else since,
            "has_more": has_more,
        }

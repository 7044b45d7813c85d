"""Repair conversations: start one, write, read, take a break, feel heard."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView

from schemas.repairs import (
    PauseSchema,
    ReadReceiptSchema,
    RepairCreateSchema,
    RepairListSchema,
    RepairMessageCreateSchema,
    RepairMessageListSchema,
    RepairMessageQueryArgsSchema,
    RepairMessageSchema,
    RepairQueryArgsSchema,
    RepairSchema,
)
from service.api.auth import auth_required, current_user, documented_member
from service.api.blueprint import Blueprint
from service.extensions import WRITING_REPAIR_MESSAGES, db, limit_setting, limiter
from service.services import repair_breaks, repair_messages, repairs

PREFIX = "/repairs"
blp = Blueprint("repairs", __name__, description="Coming back to a rocky moment")
member = documented_member(blp)
_NO_SUCH_REPAIR = "Not paired, or no such conversation the caller may see"


def _status(written: repairs.Written) -> tuple[dict[str, Any], int]:
    return written.resource, 201 if written.created else 200


# Conversations started, messages written, breaks taken and ended, per account (each counted
# apart): each writes an event to the couple's stream, which is kept while the couple lasts.
_repair_limit = limit_setting("RATELIMIT_REPAIRS")


@blp.route("")
class Repairs(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="startRepair")
    @blp.arguments(RepairCreateSchema)
    @blp.response(201, RepairSchema, description="Started")
    @blp.alt_response(200, schema=RepairSchema, description="A retry of an earlier start")
    @blp.problem(404, "Not paired")
    @blp.problem(
        409, "The client_id was used for another conversation, or couple_id is an ended one"
    )
    @blp.problem(429)
    @limiter.limit(_repair_limit)
    def post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Start a repair conversation"""
        return _status(repairs.start(db.session, current_user(), **body))

    @member
    @blp.doc(operationId="listRepairs")
    @blp.arguments(RepairQueryArgsSchema, location="query")
    @blp.response(200, RepairListSchema)
    @blp.problem(404, "Not paired")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """The couple's repair conversations, newest first"""
        return repairs.list_for(db.session, current_user(), **args)


@blp.route("/<uuid:repair_id>")
class RepairResource(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="getRepair")
    @blp.response(200, RepairSchema)
    @blp.problem(404, _NO_SUCH_REPAIR)
    def get(self, repair_id: uuid.UUID) -> dict[str, Any]:
        """One conversation with each partner's read receipt and whether they feel heard"""
        return repairs.get(db.session, current_user(), repair_id)


@blp.route("/<uuid:repair_id>/messages")
class Messages(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="writeRepairMessage")
    @blp.arguments(RepairMessageCreateSchema)
    @blp.response(201, RepairMessageSchema, description="Written")
    @blp.alt_response(200, schema=RepairMessageSchema, description="A retry")
    @blp.problem(404, _NO_SUCH_REPAIR)
    @blp.problem(409, "The conversation is resolved, or the client_id was used for another message")
    @blp.problem(429)
    @limiter.shared_limit(_repair_limit, scope=WRITING_REPAIR_MESSAGES)
    def post(self, body: dict[str, Any], repair_id: uuid.UUID) -> tuple[dict[str, Any], int]:
        """Write in the conversation"""
        return _status(repair_messages.write(db.session, current_user(), repair_id, **body))

    @member
    @blp.doc(operationId="listRepairMessages")
    @blp.arguments(RepairMessageQueryArgsSchema, location="query")
    @blp.response(200, RepairMessageListSchema)
    @blp.problem(404, _NO_SUCH_REPAIR)
    def get(self, args: dict[str, Any], repair_id: uuid.UUID) -> dict[str, Any]:
        """Messages after `after_seq`, in seq order"""
        return repair_messages.list_for(db.session, current_user(), repair_id, **args)


@blp.route("/<uuid:repair_id>/read")
class Read(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="markRepairRead")
    @blp.arguments(ReadReceiptSchema)
    @blp.response(200, RepairSchema)
    @blp.problem(404, _NO_SUCH_REPAIR)
    def post(self, body: dict[str, Any], repair_id: uuid.UUID) -> dict[str, Any]:
        """Read receipt: this partner has read up to `seq` (never moves back)"""
        return repairs.read(db.session, current_user(), repair_id, body["seq"])


@blp.route("/<uuid:repair_id>/pause")
class Pause(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="pauseRepair")
    @blp.arguments(PauseSchema)
    @blp.response(200, RepairSchema)
    @blp.problem(404, _NO_SUCH_REPAIR)
    @blp.problem(409, "The conversation is resolved")
    @blp.problem(429)
    @limiter.limit(_repair_limit)
    def post(self, body: dict[str, Any], repair_id: uuid.UUID) -> dict[str, Any]:
        """Take a break when flooded; both phones are reminded when it ends"""
        return repair_breaks.pause(db.session, current_user(), repair_id, body["minutes"])


@blp.route("/<uuid:repair_id>/resume")
class Resume(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="resumeRepair")
    @blp.response(200, RepairSchema)
    @blp.problem(404, _NO_SUCH_REPAIR)
    @blp.problem(429)
    @limiter.limit(_repair_limit)
    def post(self, repair_id: uuid.UUID) -> dict[str, Any]:
        """End a break early (idempotent)"""
        return repair_breaks.resume(db.session, current_user(), repair_id)


@blp.route("/<uuid:repair_id>/resolve")
class Resolve(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="resolveRepair")
    @blp.response(200, RepairSchema)
    @blp.problem(404, _NO_SUCH_REPAIR)
    def post(self, repair_id: uuid.UUID) -> dict[str, Any]:
        """This partner feels heard; resolved once both do (idempotent)"""
        return repairs.resolve(db.session, current_user(), repair_id)

"""Devices that receive pushes."""

from __future__ import annotations

import uuid
from typing import Any

from flask import current_app
from flask.views import MethodView

from schemas.base import PageArgsSchema
from schemas.devices import DeviceCreateSchema, DeviceListSchema, DeviceSchema
from service.api.auth import auth_required, current_member, current_user, documented_member
from service.api.blueprint import Blueprint
from service.extensions import db, limit_setting, limiter
from service.models import Device
from service.services import devices

PREFIX = "/devices"
blp = Blueprint("devices", __name__, description="Push targets")
member = documented_member(blp)


_registration_limit = limit_setting("RATELIMIT_DEVICES")


@blp.route("")
class Devices(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="registerDevice")
    @blp.arguments(DeviceCreateSchema)
    @blp.response(201, DeviceSchema, description="Registered, or a known token refreshed")
    @blp.problem(429)
    @limiter.limit(_registration_limit)
    def post(self, body: dict[str, Any]) -> Device:
        """Register a push token, or refresh a known one (upsert by token); pushes to it stop
        when this sign-in session ends"""
        keep = current_app.extensions["reach.settings"].DEVICES_PER_USER
        return devices.register(
            db.session, current_user(), session_id=current_member().session_id, keep=keep, **body
        )

    @member
    @blp.doc(operationId="listDevices")
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, DeviceListSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """The caller's devices, newest first"""
        return devices.list_for(db.session, current_user(), **args)


@blp.route("/<uuid:device_id>")
class DeviceResource(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="deleteDevice")
    @blp.response(204)
    @blp.problem(404, "No such device of the caller's")
    def delete(self, device_id: uuid.UUID) -> None:
        """Stop pushing to a device"""
        devices.delete(db.session, current_user(), device_id)

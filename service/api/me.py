"""The caller's own profile."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from schemas.accounts import ProfileUpdateSchema, UserSchema
from service.api.auth import BEARER, auth_required, current_user
from service.extensions import db
from service.models import User
from service.services import accounts

PREFIX = "/me"
blp = Blueprint("me", __name__, description="The caller's profile")


@blp.route("")
class Me(MethodView):
    decorators = [auth_required]

    @blp.doc(security=BEARER)
    @blp.response(200, UserSchema)
    def get(self) -> User:
        """The caller's profile"""
        return current_user()

    @blp.doc(security=BEARER)
    @blp.arguments(ProfileUpdateSchema)
    @blp.response(200, UserSchema)
    def patch(self, changes: dict[str, Any]) -> User:
        """Change display name, time zone, quiet hours or lock-screen notes"""
        return accounts.update_profile(db.session, current_user(), changes)

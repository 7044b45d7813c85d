"""The caller's own profile."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from schemas.accounts import ProfileUpdateSchema, UserSchema
from service.api.auth import auth_required, current_user, documented_member
from service.extensions import db
from service.models import User
from service.services import accounts

PREFIX = "/me"
blp = Blueprint("me", __name__, description="The caller's profile")
member = documented_member(blp)


@blp.route("")
class Me(MethodView):
    decorators = [auth_required]

    @member
    @blp.response(200, UserSchema)
    def get(self) -> User:
        """The caller's profile"""
        return current_user()

    @member
    @blp.arguments(ProfileUpdateSchema)
    @blp.response(200, UserSchema)
    def patch(self, changes: dict[str, Any]) -> User:
        """Change display name, time zone, quiet hours or lock-screen notes"""
        return accounts.update_profile(db.session, current_user(), changes)

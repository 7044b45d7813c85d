"""The caller's own profile."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response
from flask.blueprints import BlueprintSetupState
from flask.views import MethodView

from schemas.accounts import (
    EmailChangeConfirmSchema,
    EmailChangeRequestedSchema,
    EmailChangeSchema,
    PasswordChangeSchema,
    ProfileUpdateSchema,
    SessionListSchema,
    UserSchema,
)
from schemas.base import PageArgsSchema
from schemas.custody import ExportSchema
from service import mail
from service.api.auth import (
    access_claims,
    auth_required,
    current_member,
    current_user,
    documented_member,
    token_issuer,
)
from service.api.blueprint import Blueprint
from service.extensions import db, limit_setting, limiter
from service.models import User
from service.realtime import members
from service.services import accounts, custody, exports, profile
from service.services.accounts import email_change

PREFIX = "/me"
blp = Blueprint("me", __name__, description="The caller's profile")
member = documented_member(blp)

_export_limit = limit_setting("RATELIMIT_EXPORT")
_profile_limit = limit_setting("RATELIMIT_PROFILE")
_password_limit = limit_setting("RATELIMIT_PASSWORD")
_email_change_limit = limit_setting("RATELIMIT_EMAIL_CHANGE")
_sessions_limit = limit_setting("RATELIMIT_SESSIONS")
_EXPORT_HEADERS = {
    "Content-Disposition": {
        "description": 'attachment; filename="reach-export-YYYY-MM-DD.json" (the local day)',
        "schema": {"type": "string"},
    }
}


@blp.route("")
class Me(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="getProfile")
    @blp.response(200, UserSchema)
    def get(self) -> User:
        """The caller's profile"""
        return current_user()

    @member
    @blp.doc(operationId="updateProfile")
    @blp.arguments(ProfileUpdateSchema)
    @blp.response(200, UserSchema)
    @blp.problem(409, "The pairing changed while the profile was being saved: try again")
    @blp.problem(429)
    @limiter.limit(_profile_limit, methods=["PATCH"])
    def patch(self, changes: dict[str, Any]) -> User:
        """Change display name, time zone, quiet hours or lock-screen notes"""
        return profile.update_profile(db.session, current_user(), changes)

    @member
    @blp.doc(operationId="deleteAccount")
    @blp.response(204)
    @blp.problem(409, "The pairing changed while the account was being deleted: try again")
    def delete(self) -> None:
        """Delete the account and everything you wrote; your partner is told and keeps theirs"""
        user_id = current_user().id
        custody.delete_account(db.session, current_user())
        members.disconnect_user(user_id)  # the account's open sockets close, in every process


@blp.route("/export")
class Export(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="exportData")
    @blp.response(200, ExportSchema, headers=_EXPORT_HEADERS)
    @blp.problem(429)
    @limiter.limit(_export_limit)
    def get(self) -> Response:
        """Everything you wrote, as JSON (yours to keep, also after unpairing)"""
        exported = exports.export(db.session, current_user())
        return Response(
            exports.export_file(exported),
            mimetype="application/json",
            headers={"Content-Disposition": exports.export_disposition(exported)},
        )


@blp.record
def _export_without_head(state: BlueprintSetupState) -> None:
    """The export has no HEAD, which werkzeug gives every GET route: Flask would answer it with
    the GET view, building the whole export and counting it against the account's exports, to
    send none of it. Off the route, HEAD is refused with 405 as any other method the export
    lacks, and `Allow` (of OPTIONS, of a 405) does not list it."""
    for rule in state.app.url_map.iter_rules(f"{state.name}.{Export.__name__}"):
        if rule.methods is not None:
            rule.methods.discard("HEAD")


@blp.route("/password")
class Password(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="changePassword")
    @blp.arguments(PasswordChangeSchema)
    @blp.response(204)
    @blp.problem(409, "Another change of the password committed at the same moment: try again")
    @blp.problem(429)
    @limiter.limit(_password_limit)
    def post(self, body: dict[str, str]) -> None:
        """Change the password; every other phone signed in to the account is signed out

        A wrong `current_password` is a 422 naming it in `errors` (the caller is signed in: a
        401 would send the app's refresh-and-retry path after a token that is fine). This
        phone's tokens keep working; every other session's refresh and access tokens stop,
        its sockets close and its devices get no more pushes. The same change sent again by
        this phone within 5 minutes (its answer was lost) is answered 204 and changes nothing
        but closing any socket of the sessions that change ended still open.
        Each change tried, right or wrong, counts against RATELIMIT_PASSWORD (5 an hour) for
        the account.
        """
        caller = current_member()
        ended = accounts.change_password(
            db.session, caller, body["current_password"], body["new_password"]
        )
        for session_id in ended:  # their open sockets close, in every process
            members.disconnect_session(session_id)


@blp.route("/email")
class Email(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="changeEmail")
    @blp.arguments(EmailChangeSchema)
    @blp.response(202, EmailChangeRequestedSchema, description="Code mailed to the new address")
    @blp.problem(409, "Another account uses this email")
    @blp.problem(429)
    @limiter.limit(_email_change_limit)
    def post(self, body: dict[str, str]) -> dict[str, Any]:
        """Change the email: mail a code to the new address, which confirms it

        `password` is the account's password (a wrong one is a 422 naming it, as a wrong
        `current_password` is for `POST /me/password`); `email` the new address, read as at
        sign-up. It is a 422 naming `email` if it is the account's address already, and a 409
        if another account has it. The code (8 characters, `7KQ2-MX9D`) works for 30 minutes,
        for 5 tries, with `POST /me/email/confirm`; until then the account keeps its address.
        A new request replaces the change waiting: only the code mailed last works. Each
        request, right password or wrong, counts against RATELIMIT_EMAIL_CHANGE (5 an hour,
        20 a day) for the account.
        """
        code = accounts.request_email_change(
            db.session,
            token_issuer(),
            current_member(),
            email=body["email"],
            password=body["password"],
        )
        mail.deliver(accounts.change_mail(code))
        return {"email": code.email, "expires_in": int(email_change.CODE_TTL.total_seconds())}


@blp.route("/email/confirm")
class EmailConfirm(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="confirmEmailChange")
    @blp.arguments(EmailChangeConfirmSchema)
    @blp.response(200, UserSchema, description="The account has the new email")
    @blp.problem(409, "Another account took the new email meanwhile: nothing changed")
    def post(self, body: dict[str, str]) -> User:
        """Confirm a change of the email with the code mailed to the new address

        A code that is not the one mailed last for the account's change, has expired, was
        used, or was tried 5 times is a 422 naming `code` (ask for a new one). On 200 the
        account signs in with the new address, and its password-reset codes go there; the
        old address is mailed a notice of the change. No phone is signed out, and the
        account's connected phones get `me.updated`. The same confirmation sent again within
        5 minutes (its answer was lost) is answered 200 again and changes nothing.
        """
        changed = accounts.confirm_email_change(
            db.session, token_issuer(), current_member(), body["code"]
        )
        notice = accounts.changed_mail(changed)
        if notice is not None:
            mail.deliver(notice)
        return changed.user


@blp.route("/sessions")
class Sessions(MethodView):
    # Each method checks the token first; a sign-out's retry is let through (`delete`).
    @auth_required
    @member
    @blp.doc(operationId="listSessions")
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, SessionListSchema)
    @blp.problem(429)
    @limiter.limit(_sessions_limit, methods=["GET"])
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Where the account is signed in: its live sessions, newest first

        Each phone signed in (a session that can still refresh its tokens, or whose access
        token still works, and the caller's own, marked `current`), with when it signed in,
        when it last refreshed its tokens, and the device it registered last. Counts against
        RATELIMIT_SESSIONS for the account.
        """
        access_seconds = token_issuer().access_seconds
        return accounts.list_sessions(db.session, current_member(), access_seconds, **args)

    @member
    @blp.doc(operationId="signOutEverywhere")
    @blp.response(204)
    def delete(self) -> None:
        """Sign out of every phone, this one included: every session of the account ends

        Every refresh and access token of the account stops working, its sockets close and
        its devices get no more pushes; signing in again starts afresh. Sent again with the
        same access token (its answer was lost) it is answered 204 and ends nothing more: a
        phone signed in since stays signed in.
        """
        claims = access_claims()  # its session may have ended: by this call's first answer
        signed_out = accounts.sign_out_everywhere(db.session, claims.user_id, claims.session_id)
        # The sockets of the sessions it ended close, in every process.
        if signed_out.sessions is None:
            members.disconnect_user(claims.user_id)
        else:
            for session_id in signed_out.sessions:
                members.disconnect_session(session_id)


@blp.route("/sessions/<uuid:session_id>")
class SessionResource(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="endSession")
    @blp.response(204)
    @blp.problem(404, "No live session of the caller's account has this id")
    @blp.problem(429)
    @limiter.limit(_sessions_limit)
    def delete(self, session_id: uuid.UUID) -> None:
        """Sign one phone out: that session ends (the caller's own too, as a logout)

        Its refresh and access tokens stop working, its sockets close and its devices get no
        more pushes, as when every phone is signed out; the account's other sessions go on.
        Counts against RATELIMIT_SESSIONS for the account.
        """
        access_seconds = token_issuer().access_seconds
        accounts.end_session(db.session, current_member(), session_id, access_seconds)
        members.disconnect_session(session_id)  # its open sockets close, in every process

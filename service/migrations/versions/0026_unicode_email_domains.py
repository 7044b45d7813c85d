"""addresses stored with a punycode domain, kept in Unicode as every newer one is

Accounts made before domains were kept in Unicode hold the domain as it was typed in its ASCII
form (`ana@xn--bcher-kva.example`): sign-in finds them typed either way, but `GET /me`, the
export and the support page showed them in punycode where every newer account shows Unicode
(`ana@bücher.example`). Each is rewritten in the form the service stores today
(`emails.normalize`), oldest account first, unless another account holds that form already: the
same mailbox signed up twice, before the two forms were known as one. That one keeps its own
address, so the two stay apart, and each signs in as before (`accounts.account_by_email`).

Only the accounts whose address holds `xn--` are read. Nothing to undo downgrading: the release
before this one stores, finds and shows addresses in Unicode too.

Revision ID: 0026_unicode_email_domains
Revises: 0025_list_page_indexes
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.domain import emails

revision = "0026_unicode_email_domains"
down_revision = "0025_list_page_indexes"
branch_labels = None
depends_on = None

STORED_IN_PUNYCODE = sa.text(
    "SELECT id, email FROM users WHERE email LIKE '%xn--%' ORDER BY created_at, id"
)
# Rewritten unless the form is taken: two accounts may not hold one address.
REWRITE = sa.text(
    "UPDATE users SET email = :today WHERE id = :id "
    "AND NOT EXISTS (SELECT 1 FROM users AS holder WHERE holder.email = :today)"
)


def upgrade() -> None:
    bind = op.get_bind()
    for user_id, email in bind.execute(STORED_IN_PUNYCODE).all():
        today = emails.normalize(email)
        if today != email:
            bind.execute(REWRITE, {"id": user_id, "today": today})


def downgrade() -> None:
    pass

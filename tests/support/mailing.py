"""Reading the codes Reach mails (to the SMTP stand-in): password resets, changes of email."""

from __future__ import annotations

import re
from email.message import EmailMessage

# MAIL_FROM of the servers that mail the stand-in (`mailing` in tests/api/conftest.py).
FROM = "Reach <no-reply@reach.test>"
CODE = re.compile(r"^Your code: (\S+)$", re.MULTILINE)


def code_in(message: EmailMessage) -> str:
    """The code a mail carries, on its line `Your code: 7KQ2-MX9D`."""
    found = CODE.search(message.get_content())
    assert found is not None, message.get_content()
    return found.group(1)

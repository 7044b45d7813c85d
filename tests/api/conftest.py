"""Fixtures of the API tests that read what Reach mails: a server that mails the SMTP stand-in."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.client import ApiClient
from tests.support.documented import answers_documented
from tests.support.mailing import FROM
from tests.support.server import LiveServer
from tests.support.smtp_standin import SmtpStandIn


@pytest.fixture
def mailing(server_with: Callable[..., LiveServer], smtp_standin: SmtpStandIn) -> LiveServer:
    """A live server whose mails go to `smtp_standin`."""
    return server_with(MAIL_BACKEND="smtp", SMTP_URL=smtp_standin.url, MAIL_FROM=FROM)


@pytest.fixture
def mailing_api(mailing: LiveServer) -> Iterator[ApiClient]:
    """A client of `mailing`; every answer it gets must be one the OpenAPI document describes."""
    client = ApiClient(mailing.url)
    try:
        yield from answers_documented(client)
    finally:
        client.http.close()

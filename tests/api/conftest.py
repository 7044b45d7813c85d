"""Every answer the API tests meet must be one the OpenAPI document describes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.client import ApiClient
from tests.support.documented import answers_documented


@pytest.fixture
def client(client: ApiClient) -> Iterator[ApiClient]:
    yield from answers_documented(client)

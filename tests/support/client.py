"""An HTTP client for the API over real HTTP, and helpers to make people and couples."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests

PASSWORD = "correct horse battery staple"
_counter = itertools.count(1)


@dataclass
class Person:
    email: str
    password: str
    user: dict[str, Any]
    access_token: str
    refresh_token: str

    @property
    def id(self) -> str:
        return str(self.user["id"])

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


@dataclass
class ApiClient:
    base_url: str
    http: requests.Session = field(default_factory=requests.Session)

    def request(
        self, method: str, path: str, *, as_: Person | None = None, **kwargs: Any
    ) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if as_ is not None:
            headers.update(as_.headers)
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        return self.http.request(method, url, headers=headers, timeout=10, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    # --- people and couples -------------------------------------------------------------
    def register(
        self, name: str = "Sam", timezone: str = "Europe/Berlin", email: str | None = None
    ) -> Person:
        email = email or f"{name.lower()}-{next(_counter)}-{uuid.uuid4().hex[:6]}@example.test"
        response = self.post(
            "/api/v1/auth/register",
            json={"email": email, "password": PASSWORD, "display_name": name, "timezone": timezone},
        )
        assert response.status_code == 201, response.text
        body = response.json()
        return Person(email, PASSWORD, body["user"], body["access_token"], body["refresh_token"])

    def fresh(self, person: Person) -> Person:
        """Sign in again, so the access token is valid at the (moved) service clock."""
        response = self.post(
            "/api/v1/auth/login", json={"email": person.email, "password": person.password}
        )
        assert response.status_code == 200, response.text
        person.access_token = response.json()["access_token"]
        return person

    def pair(self, inviter: Person, joiner: Person) -> dict[str, Any]:
        invite = self.post("/api/v1/couple/invites", as_=inviter)
        assert invite.status_code == 201, invite.text
        joined = self.post("/api/v1/couple/join", as_=joiner, json={"code": invite.json()["code"]})
        assert joined.status_code == 201, joined.text
        return dict(joined.json())

    def couple(self, a_name: str = "Ana", b_name: str = "Ben") -> tuple[Person, Person]:
        a, b = self.register(a_name), self.register(b_name)
        self.pair(a, b)
        return a, b

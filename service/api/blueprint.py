"""The blueprint every REST resource is declared on."""

from __future__ import annotations

from typing import Any

import flask_smorest


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint, with each request schema built once, where the route is declared.

    Given a schema class, webargs builds an instance of it for every request it parses
    (`Parser._get_schema`): marshmallow copies the declared fields each time, 20-40 µs of CPU in
    a hot loop and more under load, on every request that has a body or a query
    (bench/RESULTS.md, "What changed" 30). A schema given as an instance is used as it is; the
    service's schemas keep no state between loads, so one instance serves every request.
    """

    def arguments(self, schema: Any, *args: Any, **kwargs: Any) -> Any:
        return super().arguments(schema() if isinstance(schema, type) else schema, *args, **kwargs)

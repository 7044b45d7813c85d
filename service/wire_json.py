"""JSON as the service sends it, in API answers and Socket.IO packets alike: UTF-8, with text
outside ASCII as it is. Escaped (`\\ud83d\\ude00`), an emoji took 12 bytes instead of 4, and a
sync page of emoji messages was up to three times its size."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, cast

from engineio import json as engineio_json
from flask import Response
from flask.json.provider import DefaultJSONProvider
from socketio import packet
from werkzeug.sansio.response import Response as AnyResponse

# A lone surrogate has no UTF-8. The schemas refuse one in what they read, but an error may
# name what was sent (an unknown field's name): such JSON goes out escaped, as valid JSON.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps(obj: Any, **kwargs: Any) -> str:
    """`json.dumps` with text as it is (`ensure_ascii=False`), but for a lone surrogate."""
    text = json.dumps(obj, **{**kwargs, "ensure_ascii": False})
    if not text.isascii() and _LONE_SURROGATE.search(text):
        return json.dumps(obj, **{**kwargs, "ensure_ascii": True})
    return text


def encode(obj: Any, **kwargs: Any) -> bytes:
    """`dumps` as UTF-8 bytes, encoded once: a lone surrogate shows as its UTF-8 fails (rather
    than by searching megabytes of text for one), and the text is made escaped."""
    try:
        return json.dumps(obj, **{**kwargs, "ensure_ascii": False}).encode()
    except UnicodeEncodeError:
        return json.dumps(obj, **{**kwargs, "ensure_ascii": True}).encode()


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON (answers, problem objects, the dashboard's), keys in their own order."""

    sort_keys = False
    ensure_ascii = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("default", self.default)
        kwargs.setdefault("sort_keys", self.sort_keys)
        return dumps(obj, **kwargs)

    def response(self, *args: Any, **kwargs: Any) -> AnyResponse:
        """An answer, encoded once (`encode`)."""
        obj = self._prepare_response_obj(args, kwargs)
        indented = (self.compact is None and self._app.debug) or self.compact is False
        layout: dict[str, Any] = {"indent": 2} if indented else {"separators": (",", ":")}
        options = {"default": self.default, "sort_keys": self.sort_keys, **layout}
        body = encode(obj, **options) + b"\n"
        answer = cast(type[Response], self._app.response_class)
        return answer(body, mimetype=self.mimetype)


GIVE_ONCE = "Give this field once."


class _Members(dict[str, Any]):
    """A JSON object in which `twice` names were given more than once (the last value kept)."""

    twice: list[str]


def read(text: str, parse: Callable[..., Any] = json.loads) -> tuple[Any, list[str]]:
    """`text` as JSON, and the dotted names (`quiet_hours.end`, `1.note` in an array) given
    more than once in any of its objects, which keep the last value: parsers differ on which
    value they keep, so an app's (or a proxy's) reading could differ from the service's."""
    marked = False

    def members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal marked
        found = dict(pairs)
        if len(found) == len(pairs):
            return found
        names = [name for name, _ in pairs]
        twice = _Members(found)
        twice.twice = sorted({name for name in names if names.count(name) > 1})
        marked = True
        return twice

    body = parse(text, object_pairs_hook=members)
    return body, (_given_twice(body) if marked else [])


def _given_twice(body: Any) -> list[str]:
    """The dotted names given more than once in any object of `body`. Iterative: the parser
    has already refused JSON nested too deeply for the stack."""
    found: list[str] = []
    stack: list[tuple[Any, str]] = [(body, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            found.extend(f"{path}{name}" for name in getattr(item, "twice", ()))
            stack.extend((value, f"{path}{name}.") for name, value in item.items())
        elif isinstance(item, list):
            stack.extend((value, f"{path}{index}.") for index, value in enumerate(item))
    return sorted(found)


def given_once(names: list[str]) -> dict[str, list[str]]:
    """The 422 problem's `errors` for names given more than once."""
    return {name: [GIVE_ONCE] for name in names}


class GivenTwice(list[Any]):
    """A packet's arguments (`["bid.send", {...}]`) in which an object gave a name more than
    once: `twice` names them, as `read` does. The event is refused (`realtime.inbound`)."""

    twice: list[str]


class AuthGivenTwice(dict[str, Any]):
    """A connect packet's `auth` in which an object gave a name more than once: `twice` names
    them. The connection is refused (`realtime.inbound`)."""

    twice: list[str]


def _marked(body: Any, twice: list[str]) -> Any:
    """`body` marked with the names it gave twice (a packet's arguments or a connect's auth)."""
    marked: GivenTwice | AuthGivenTwice
    if isinstance(body, list):
        marked = GivenTwice(body)
    elif isinstance(body, dict):
        marked = AuthGivenTwice(body)
    else:
        return body
    marked.twice = twice
    return marked


def _packet_loads(text: str) -> Any:
    """A packet's JSON; integers of more than 100 digits refused, as Engine.IO's JSON does."""
    body, twice = read(text, engineio_json.loads)
    return _marked(body, twice) if twice else body


class _PacketJSON:
    """The JSON module of Socket.IO packets (and of the message queue between processes)."""

    dumps = staticmethod(dumps)
    loads = staticmethod(_packet_loads)


class Packet(packet.Packet):
    """Socket.IO packets encoded as `dumps` does; python-socketio's own (its clients' too, in
    this process) stay as they are."""

    json = _PacketJSON

    @classmethod
    def reconstruct_binary(cls, data: Any, attachments: list[Any]) -> Any:
        """A binary event's arguments with its attachments in place, marked as its JSON was:
        python-socketio builds them anew, and the names given twice would go unseen."""
        rebuilt = super().reconstruct_binary(data, attachments)
        twice = getattr(data, "twice", None)
        return _marked(rebuilt, twice) if twice else rebuilt

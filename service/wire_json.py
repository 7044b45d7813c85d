"""JSON as the service sends it, in API answers and Socket.IO packets alike: UTF-8, with text
outside ASCII as it is. Escaped (`\\ud83d\\ude00`), an emoji took 12 bytes instead of 4, and a
sync page of emoji messages was up to three times its size."""

from __future__ import annotations

import json
import re
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


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON (answers, problem objects, the dashboard's), keys in their own order."""

    sort_keys = False
    ensure_ascii = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("default", self.default)
        kwargs.setdefault("sort_keys", self.sort_keys)
        return dumps(obj, **kwargs)

    def response(self, *args: Any, **kwargs: Any) -> AnyResponse:
        """An answer, encoded once: a lone surrogate shows as its UTF-8 fails (rather than by
        searching a sync page of megabytes for one), and the answer is made escaped."""
        obj = self._prepare_response_obj(args, kwargs)
        indented = (self.compact is None and self._app.debug) or self.compact is False
        layout: dict[str, Any] = {"indent": 2} if indented else {"separators": (",", ":")}
        options = {"default": self.default, "sort_keys": self.sort_keys, **layout}
        try:
            body = f"{json.dumps(obj, ensure_ascii=False, **options)}\n".encode()
        except UnicodeEncodeError:
            body = f"{json.dumps(obj, **options)}\n".encode()
        answer = cast(type[Response], self._app.response_class)
        return answer(body, mimetype=self.mimetype)


class _PacketJSON:
    """The JSON module of Socket.IO packets (and of the message queue between processes)."""

    dumps = staticmethod(dumps)
    loads = staticmethod(engineio_json.loads)  # refuses integers of more than 100 digits


class Packet(packet.Packet):
    """Socket.IO packets encoded as `dumps` does; python-socketio's own (its clients' too, in
    this process) stay as they are."""

    json = _PacketJSON

"""Engine.IO's WebSocket transport without a greenlet per idle connection.

engineio's stock path (simple-websocket) keeps four greenlets alive for every idle phone: the
request's handler waiting on an event, simple-websocket's reader, engineio's writer waiting on
the socket's queue, and a ping task asleep for 25 s. Each holds its saved C stack and frames,
and the handler also holds the whole HTTP request it was started by: about 67 KB per socket
(bench/RESULTS.md). Here, under gunicorn's gevent worker:

- once upgraded, the socket leaves the request: gunicorn's handler returns, and a watcher on
  the event loop starts a short-lived greenlet when the phone sends something;
- packets for the phone are written by a drain task started when something is queued, gone
  when the queue is empty;
- one pinger per server sends every socket's Engine.IO PING when it is due;
- permessage-deflate is declined: Socket.IO packets are small, and a zlib stream pair would cost
  a few hundred KB per phone (OkHttp offers it by default);
- a message over `max_http_buffer_size` is read and discarded past its head, never held
  whole, and handed on as `Oversized` for the server's `on_oversized` to answer: the socket
  stays open (a bare close told the phone nothing, and it would send the same event again).

An idle phone costs its socket, its Engine.IO and Socket.IO state and nothing else. Under
werkzeug's threaded server (development and the tests) the request's thread reads the socket,
blocking, as before. The Engine.IO protocol (OPEN, the upgrade probe, PING/PONG, CLOSE, ping
timeouts) stays engineio's: LeanSocket overrides how packets reach the wire and when pings are
sent. `install(eio, max_sockets)` applies it to one engineio server.
"""

from service.realtime.transport.lean_server import LeanServer, hold_at_most, install, serves
from service.realtime.transport.lean_socket import LeanSocket
from service.realtime.transport.lingering import wait_lingering
from service.realtime.transport.oversized import Oversized
from service.realtime.transport.websocket import WebSocket

__all__ = [
    "LeanServer",
    "LeanSocket",
    "Oversized",
    "WebSocket",
    "hold_at_most",
    "install",
    "serves",
    "wait_lingering",
]

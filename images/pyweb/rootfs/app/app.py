"""ctk-demo/pyweb: a tiny web app whose whole state lives in memory.

Nothing is written to disk, so only a checkpoint (memory and all) keeps it across a restore:
a restarted app would answer hits 0, an empty dict and a new ``started``.

    GET  /state         {"hits": N, "items": {...}, "started": T, "pid": P}
    POST /hit           hits += 1; answers the new state
    PUT  /items/KEY     items[KEY] = the request body (UTF-8); answers the new state
    GET  /items/KEY     the value, or 404
"""

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("PORT", "8000"))

_lock = threading.Lock()
_state = {"hits": 0, "items": {}, "started": time.time(), "pid": os.getpid()}


class Handler(BaseHTTPRequestHandler):
    def _send(self, status, body):
        data = json.dumps(body, sort_keys=True).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _snapshot(self):
        with _lock:
            return {**_state, "items": dict(_state["items"])}

    def do_GET(self):
        if self.path == "/state":
            self._send(200, self._snapshot())
        elif self.path.startswith("/items/"):
            key = self.path[len("/items/") :]
            with _lock:
                value = _state["items"].get(key)
            if value is None:
                self._send(404, {"error": f"no item {key}"})
            else:
                self._send(200, {"key": key, "value": value})
        else:
            self._send(404, {"error": "unknown path"})

    def do_POST(self):
        if self.path != "/hit":
            self._send(404, {"error": "unknown path"})
            return
        with _lock:
            _state["hits"] += 1
        self._send(200, self._snapshot())

    def do_PUT(self):
        if not self.path.startswith("/items/"):
            self._send(404, {"error": "unknown path"})
            return
        key = self.path[len("/items/") :]
        length = int(self.headers.get("Content-Length", "0"))
        value = self.rfile.read(length).decode()
        with _lock:
            _state["items"][key] = value
        self._send(200, self._snapshot())


if __name__ == "__main__":
    # As a container's process 1, Python would ignore SIGTERM (the kernel drops signals to a
    # namespace's init that has no handler): `stop` would wait its whole timeout, then kill.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    print(f"pyweb listening on :{PORT} as uid {os.getuid()}", flush=True)
    server.serve_forever()

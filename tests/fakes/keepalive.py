"""A raw HTTP/1.1 upstream on a loopback socket, for keep-alive connection tests.

It answers every `POST .../chat/completions` with a small chat completion and keeps the
connection open (HTTP/1.1 keep-alive), like any OpenAI-compatible server. Two faults:
- `close_idle()` closes every connection it holds open (what an upstream's keep-alive idle
  timeout does), and returns once they are closed;
- `drop_next = True`: the next request is read whole, recorded, and its connection closed
  without an answer (the upstream died after receiving it).
`connections` counts accepted connections; `requests` records (connection number, body) in order.
Each connection is served by a thread of its own (blocking sockets: no event loop to share).
"""

from __future__ import annotations

import socket
import threading

import orjson

REPLY = orjson.dumps({
    "id": "chatcmpl-raw", "object": "chat.completion", "created": 0, "model": "raw",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
})


class KeepAliveUpstream:
    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        self.requests: list[tuple[int, bytes]] = []
        self.drop_next = False
        self._open: dict[int, socket.socket] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
                self._open[number] = conn
            threading.Thread(target=self._serve, args=(number, conn), daemon=True).start()

    def _serve(self, number: int, conn: socket.socket) -> None:
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(buffer) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                body, buffer = buffer[:length], buffer[length:]
                with self._lock:
                    self.requests.append((number, body))
                    drop, self.drop_next = self.drop_next, False
                if drop:
                    return
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n%s" % (len(REPLY), REPLY))
        except OSError:
            return
        finally:
            with self._lock:
                self._open.pop(number, None)
            conn.close()

    def close_idle(self) -> None:
        with self._lock:
            conns = list(self._open.values())
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # FIN now, whatever the serving thread is doing
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        self.close_idle()

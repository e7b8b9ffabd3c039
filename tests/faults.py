"""Real faulty network peers for fault-injection tests: a provider that never answers, one that resets every
connection, an endpoint that goes down.

Plain sockets and threads on loopback, nothing patched: the gateway meets them as it would meet the real thing.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time


class _Peer:
    """A TCP server on loopback with an accept loop of its own; a subclass says what each connection gets
    (`_take`) and what is done between connections (`_idle`). A subclass sets its own state before calling
    this `__init__`, which starts the loop."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.02)
        self.port = self._server.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                self._idle()
                continue
            except OSError:
                return
            self._take(conn)

    def _take(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _idle(self) -> None:
        pass

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self._server.close()


class Blackhole(_Peer):
    """A TCP server that accepts every connection, reads what comes and never finishes an answer: a provider
    whose process hangs after accept (a wedged worker, a full backlog behind a load balancer). With `answer`
    it sends those bytes once a request arrives (the head of a stream, say) and then nothing more."""

    def __init__(self, answer: bytes = b"") -> None:
        self.answer = answer
        self.accepted = 0  # connections taken: each one a fault the gateway had to get past
        self.received = bytearray()  # everything the gateway sent, over every connection
        self._held: list[tuple[socket.socket, bytearray]] = []
        self._lock = threading.Lock()
        super().__init__()

    def _take(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        with self._lock:
            self.accepted += 1
            self._held.append((conn, bytearray()))

    def _idle(self) -> None:
        """Read (and keep) what arrived so the peer's writes never block: it waits on an answer only."""
        with self._lock:
            for conn, seen in self._held:
                answered = bool(seen)
                with contextlib.suppress(OSError):  # BlockingIOError: nothing more for now
                    while chunk := conn.recv(65536):
                        seen += chunk
                        self.received += chunk
                if self.answer and seen and not answered:
                    with contextlib.suppress(OSError):
                        conn.sendall(self.answer)

    def close(self) -> None:
        super().close()
        with self._lock:
            for conn, _ in self._held:
                conn.close()


class Resetter(_Peer):
    """A TCP server that accepts every connection, reads the request's first bytes and resets the connection
    (RST, no answer): a provider whose process dies on a request, or a middlebox that drops the flow."""

    def __init__(self) -> None:
        self.reset = 0  # connections reset after a request arrived on them: each one a fault the gateway met
        super().__init__()

    def _take(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(5)
            if conn.recv(65536):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
                self.reset += 1


class Outage:
    """A real TCP front for the fake OAuth server that can go down: `up` pipes every connection through,
    `503` answers each request with a 503 of its own, `refused` closes the port (connection refused). Switching
    cuts the connections piped so far, as a restart of the real endpoint would: a pooled connection cannot
    slip past the outage."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self.mode = "up"
        self.answered_503 = 0  # token calls failed with a 503: faults injected
        self._pipes: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = self._listen(0)
        self.port = self._listener.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @staticmethod
    def _listen(port: int) -> socket.socket:
        listener = socket.create_server(("127.0.0.1", port))  # SO_REUSEADDR: the port comes back after `refused`
        listener.settimeout(0.02)
        return listener

    def set(self, mode: str) -> None:
        with self._lock:
            if mode == "refused" and self.mode != "refused":
                # shutdown first: a close alone leaves the socket listening until the serving thread's accept()
                # returns, and coming back up on the port at once would then find it in use.
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
            elif mode != "refused" and self.mode == "refused":
                self._listener = self._listen(self.port)
            self.mode = mode
            for pipe in self._pipes:
                with contextlib.suppress(OSError):
                    pipe.shutdown(socket.SHUT_RDWR)
            self._pipes.clear()

    def _serve(self) -> None:
        while not self._closed.is_set():
            with self._lock:
                listener, mode = self._listener, self.mode
            if mode == "refused":
                time.sleep(0.02)
                continue
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:  # the mode as it is now: it may have changed while accept() waited
                handler = self._pipe if self.mode == "up" else self._unavailable
            threading.Thread(target=handler, args=(conn,), daemon=True).start()

    def _pipe(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self._target))
        except OSError:  # the fake behind is gone (the test is over): as good as down
            conn.close()
            return
        with self._lock:
            if self.mode != "up":  # it went down between the accept and now: this one does not get through
                conn.close()
                upstream.close()
                return
            self._pipes += [conn, upstream]

        def copy(src: socket.socket, dst: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := src.recv(65536):
                    dst.sendall(data)
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

        back = threading.Thread(target=copy, args=(upstream, conn), daemon=True)
        back.start()
        copy(conn, upstream)
        back.join()
        conn.close()
        upstream.close()

    def _unavailable(self, conn: socket.socket) -> None:
        """Read one request (head and body), answer 503, close: an endpoint behind a failing load balancer."""
        with conn:
            conn.settimeout(5)
            data = b""
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length and (chunk := conn.recv(65536)):
                    body += chunk
                payload = b'{"error":"temporarily_unavailable","error_description":"down for maintenance"}'
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(payload), payload))
                with self._lock:
                    self.answered_503 += 1

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self.set("refused")

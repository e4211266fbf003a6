"""Real servers on 127.0.0.1 for the benchmark tests and the engine benchmark.

Each one is started by the test that needs it and stopped when it ends: a
throwaway nginx with its own configuration, a threaded Python HTTP server with
an injected delay, a listener that never answers, and a port nobody listens
on. Nothing here talks to anything but the loopback interface.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Block until something accepts connections on ``port``, or raise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {timeout}s")


NGINX_CONF = """
worker_processes 1;
daemon off;
master_process on;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    keepalive_requests 1000000;
    server {{
        listen {host}:{port};
        location = /healthz {{ return 200 "ok\\n"; }}
        location = /fail {{ return 503 "unavailable\\n"; }}
        location = /missing {{ return 404 "no such thing\\n"; }}
        location = /readonly {{
            if ($request_method != GET) {{ return 405; }}
            return 200 "ok\\n";
        }}
        # A known delay: the upstream never answers, nginx gives up after
        # exactly 50 ms and answers 200 instead of 504.
        location = /delay50 {{
            proxy_pass http://{host}:{silent_port};
            proxy_read_timeout 50ms;
            error_page 504 =200 /ok;
        }}
        location = /ok {{ return 200 "ok\\n"; }}
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


class Nginx:
    """nginx in a temporary folder, serving /healthz, /fail (503), /missing (404),
    /readonly (405 to all but GET), / (200) and /delay50 (200 after 50 ms)."""

    def __init__(self) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(binary):
            raise RuntimeError("nginx is not installed")
        self.root = Path(tempfile.mkdtemp(prefix="nself-bench-nginx-"))
        self.port = free_port()
        self.upstream = SilentServer()
        conf = self.root / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                root=self.root,
                host=HOST,
                port=self.port,
                silent_port=self.upstream.port,
            )
        )
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf), "-p", str(self.root), "-e", "stderr"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.upstream.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def serve_with_delay(port: int, delay_s: float) -> None:
    """Serve on ``port`` forever, answering every request after ``delay_s``.

    ``POST /__delay`` with the new delay in seconds as its body changes it.
    ``GET /__applied`` answers the delays actually applied since the last
    call, in seconds: from the moment a request was read to the moment its
    answer was handed to the kernel. ``GET /__connections`` answers how many
    client connections sent requests since the last call, and ``GET
    /__requests`` the method, path and body of each request since the last
    call (at most the first 100,000).
    """
    state = {"delay": delay_s}
    applied: list[float] = []
    peers: set = set()
    seen: list[list[str]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # One buffered write per answer, sent at once: headers and body in
        # separate small writes would wait on the client's delayed ACK and
        # add some 40 ms to every request.
        wbufsize = 65536
        disable_nagle_algorithm = True

        def _answer(self) -> None:
            started = time.monotonic()
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length) if length else b""
            body = b'{"ok":true}'
            if self.path == "/__delay":
                state["delay"] = float(data)
            elif self.path == "/__applied":
                with lock:
                    body = json.dumps(applied).encode()
                    applied.clear()
            elif self.path == "/__connections":
                with lock:
                    body = json.dumps(len(peers)).encode()
                    peers.clear()
            elif self.path == "/__requests":
                with lock:
                    body = json.dumps(seen).encode()
                    seen.clear()
            else:
                with lock:
                    peers.add(self.client_address)
                    if len(seen) < 100_000:
                        seen.append(
                            [self.command, self.path, data.decode("utf-8", "replace")]
                        )
                time.sleep(state["delay"])
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            if not self.path.startswith("/__"):
                with lock:
                    applied.append(time.monotonic() - started)

        do_GET = _answer
        do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:
            return

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        # listen()'s backlog is set when the server is built; with the default
        # of 5 a burst of connects overflows it and the dropped SYNs come back
        # only after a one-second retransmit.
        request_queue_size = 512

        def handle_error(self, request: object, client_address: object) -> None:
            # wrk resets its connections when a run ends; that is no error.
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)

    Server((HOST, port), Handler).serve_forever()


def _realtime_launcher() -> tuple[str, ...]:
    # On a machine busy with other work a process woken after its sleep may
    # wait milliseconds for a CPU, whatever its nice value (other sessions'
    # processes sit in scheduling groups of their own). The delay server and,
    # in the accuracy tests, wrk run in the real-time class so that what is
    # measured is the delay asked for. Where that is not allowed they run as
    # they are.
    chrt = shutil.which("chrt")
    if not chrt:
        return ()
    probe = subprocess.run([chrt, "-f", "10", "true"], capture_output=True, check=False)
    return (chrt, "-f", "10") if probe.returncode == 0 else ()


#: Command prefix that runs a program in the real-time class, or nothing.
REALTIME = _realtime_launcher()


class DelayServer:
    """Threaded HTTP/1.1 server that answers 200 after ``delay_s`` seconds.

    It runs in a process of its own, so the test process's own work does not
    delay its answers. ``delay_s`` may be changed while it runs, which lets one
    server stand for two builds of an application: one normal, one slower.
    """

    def __init__(self, delay_s: float) -> None:
        self.port = free_port()
        self._delay_s = delay_s
        argv = [sys.executable, __file__, "delay", str(self.port), repr(delay_s)]
        self.proc = subprocess.Popen([*REALTIME, *argv])
        wait_for_port(self.port)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def delay_s(self) -> float:
        return self._delay_s

    @delay_s.setter
    def delay_s(self, value: float) -> None:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
        try:
            conn.request("POST", "/__delay", body=repr(value))
            if conn.getresponse().status != 200:
                raise RuntimeError("the delay server refused the new delay")
        finally:
            conn.close()
        self._delay_s = value

    def _ask(self, path: str):
        conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
        try:
            conn.request("GET", path)
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def applied_ms(self) -> list[float]:
        """Delays the server applied since the last call, in milliseconds."""
        return [v * 1000.0 for v in self._ask("/__applied")]

    def connections(self) -> int:
        """Client connections that sent requests since the last call."""
        return self._ask("/__connections")

    def requests(self) -> list[tuple[str, str, str]]:
        """Method, path and body of each request since the last call."""
        return [tuple(r) for r in self._ask("/__requests")]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class SilentServer:
    """Accepts connections and reads requests but never answers any.

    A connection is closed when its peer closes it, so a long run does not
    pile up descriptors. ``first_requests()`` tells when each connection's
    first bytes arrived (``time.monotonic()``: this server runs in the test's
    own process).
    """

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(1024)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.sock, selectors.EVENT_READ)
        self._stop = threading.Event()
        self._first: dict[int, float] = {}
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _events in self._selector.select(timeout=0.2):
                if key.fileobj is self.sock:
                    with contextlib.suppress(BlockingIOError):
                        conn, _addr = self.sock.accept()
                        conn.setblocking(False)
                        self._selector.register(conn, selectors.EVENT_READ)
                    continue
                conn = key.fileobj
                try:
                    data = conn.recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionError:
                    data = b""
                if data:
                    with self._lock:
                        self._first.setdefault(id(conn), time.monotonic())
                if not data:
                    self._selector.unregister(conn)
                    conn.close()
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()
        self._selector.close()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def first_requests(self) -> list[float]:
        """When each connection since the last call first sent something."""
        with self._lock:
            times = sorted(self._first.values())
            self._first.clear()
        return times

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)


def closed_port_url() -> str:
    """URL of a port on 127.0.0.1 where nothing listens (connections refused)."""
    return f"http://{HOST}:{free_port()}"


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "delay":
        serve_with_delay(int(sys.argv[2]), float(sys.argv[3]))
    else:
        sys.exit(f"usage: {sys.argv[0]} delay PORT SECONDS")

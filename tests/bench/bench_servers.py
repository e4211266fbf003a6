"""Real servers on 127.0.0.1 for the benchmark tests and the engine benchmark.

Each one is started by the test that needs it and stopped when it ends: a
throwaway nginx with its own configuration, a threaded Python HTTP server with
an injected delay, a listener that never answers, and a port nobody listens
on. Nothing here talks to anything but the loopback interface.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
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
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


class Nginx:
    """nginx in a temporary folder, serving /healthz, /fail (503) and / (200)."""

    def __init__(self) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(binary):
            raise RuntimeError("nginx is not installed")
        self.root = Path(tempfile.mkdtemp(prefix="nself-bench-nginx-"))
        self.port = free_port()
        conf = self.root / "nginx.conf"
        conf.write_text(NGINX_CONF.format(root=self.root, host=HOST, port=self.port))
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
        shutil.rmtree(self.root, ignore_errors=True)


class DelayServer:
    """Threaded HTTP/1.1 server that answers 200 after ``delay_s`` seconds.

    ``delay_s`` may be changed while it runs, which lets one server stand for
    two builds of an application: one normal, one slower.
    """

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # One buffered write per answer, sent at once: headers and body in
            # separate small writes would wait on the client's delayed ACK
            # and add some 40 ms to every request.
            wbufsize = 65536
            disable_nagle_algorithm = True

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                time.sleep(owner.delay_s)
                body = b'{"ok":true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, format: str, *args: object) -> None:
                return

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            # listen()'s backlog is set when the server is built; with the
            # default of 5 a burst of connects overflows it and the dropped
            # SYNs come back only after a one-second retransmit.
            request_queue_size = 512

        self.server = Server((HOST, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SilentServer:
    """Accepts connections and reads requests but never answers any."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(256)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _addr = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self._conns.append(conn)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        for conn in self._conns:
            conn.close()
        self.sock.close()


def closed_port_url() -> str:
    """URL of a port on 127.0.0.1 where nothing listens (connections refused)."""
    return f"http://{HOST}:{free_port()}"

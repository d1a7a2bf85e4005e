"""The Procfile's gunicorn against the ``sim`` fixture, for the front door's tests
(tests/test_door.py, tests/test_door_slow_readers.py)."""
from __future__ import annotations

import http.client
import json
import os
import resource
import socket
import subprocess
from collections import Counter

import pytest

from tests.helpers import SERVER_ADMIN_TOKEN as ADMIN
from tests.helpers import SERVER_WEBHOOK_SECRET as SECRET
from tests.helpers import REPO, LineReader, free_port, procfile_command, wait_for

ATTACKER = "127.0.0.1"
HONEST = "127.0.0.2"
HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.5
TRADINGVIEW_CUTOFF_S = 3.0


@pytest.fixture
def many_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))  # gunicorn inherits it
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class Gunicorn:
    """The Procfile's command on 127.0.0.1 against the ``sim`` fixture."""

    def __init__(self, sim, tmp_path, *, fd_limit=None, send_buffer=None, **extra_env):
        """``send_buffer``: the listening socket is made here with that SO_SNDBUF (its connections
        inherit it; the kernel's autotuning is off) and handed to gunicorn as ``fd://`` -- what a
        host whose buffers are small gives, so a client that does not read fills it soon."""
        self.listener = None
        if send_buffer is not None:
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
            self.listener.bind(("127.0.0.1", 0))
            self.listener.listen(1024)
            self.listener.set_inheritable(True)
            self.port = self.listener.getsockname()[1]
        else:
            self.port = free_port()
        self.journal = str(tmp_path / "journal.sqlite3")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADOVATE_", "WEBHOOK_", "ADMIN_", "HTTP_"))}
        env.update(
            TRADOVATE_ENV="sim", TRADOVATE_REST_URL=sim.rest_url, TRADOVATE_WS_URL=sim.ws_url,
            WEBHOOK_SECRET=SECRET, ADMIN_TOKEN=ADMIN, DATABASE_PATH=str(tmp_path / "journal.sqlite3"),
            WS_HEARTBEAT_INTERVAL_S="0.2", KEEPALIVE_INTERVAL_S="0.5", GRACEFUL_TIMEOUT_S="5",
            HTTP_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S), HTTP_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
            HTTP_KEEPALIVE_IDLE_S="1", HTTP_MAX_CONNECTIONS="2000", HTTP_MAX_CONNECTIONS_PER_SOURCE="1000",
            PYTHONUNBUFFERED="1",
            # OS-level thread names (tests/thread_names/sitecustomize.py), so thread_names() can
            # tell the door's pool threads from the app's
            PYTHONPATH=os.pathsep.join(p for p in (str(REPO / "tests" / "thread_names"), os.environ.get("PYTHONPATH")) if p))
        env.update(extra_env)
        limit = None
        if fd_limit is not None:
            def limit():
                resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        args = procfile_command(self.port)
        if self.listener is not None:
            args[args.index("--bind") + 1] = f"fd://{self.listener.fileno()}"
        self.proc = subprocess.Popen(args, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     preexec_fn=limit, pass_fds=(self.listener.fileno(),) if self.listener else ())
        self.out, self.err = LineReader(self.proc.stdout), LineReader(self.proc.stderr)

        def ready():
            assert self.proc.poll() is None, f"gunicorn exited:\n{self.err.text()}"
            try:
                status, body = self.request("GET", "/api/websocket-status", source=HONEST, timeout=1,
                                            headers={"Authorization": f"Bearer {ADMIN}"})
            except OSError:
                return False
            self.last_status = (status, body)
            conns = body["connection_pool"]["connections"] if status == 200 and "connection_pool" in body else {}
            return conns and all(c["ws_connected"] for c in conns.values())
        self.last_status = None
        try:  # whatever goes wrong here, no gunicorn is left running
            try:
                wait_for(ready, timeout_s=20, interval_s=0.05)
            except AssertionError:
                raise AssertionError(f"not ready; last status answer {self.last_status}\n{self.err.text()[-3000:]}")
            kids = open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read().split()
            assert len(kids) == 1, kids  # one worker
            self.worker = int(kids[0])
        except BaseException:
            self.stop()
            raise

    def request(self, method, path, body=None, *, source, timeout=TRADINGVIEW_CUTOFF_S, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout, source_address=(source, 0))
        headers = dict(headers or {})
        if body:
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            try:
                return resp.status, json.loads(raw or b"null")
            except ValueError:
                return resp.status, {"not_json": raw[:500].decode("utf-8", "replace")}
        finally:
            conn.close()

    def threads(self) -> int:
        for line in open(f"/proc/{self.worker}/status"):
            if line.startswith("Threads:"):
                return int(line.split()[1])
        raise AssertionError("no Threads line")

    def thread_names(self) -> Counter:
        """The worker's threads by name (first 15 characters): gunicorn's pool threads are
        ``ThreadPoolExecu``, the app's executors ``signal_N``/``order_N``."""
        names = Counter()
        for tid in os.listdir(f"/proc/{self.worker}/task"):
            try:
                names[open(f"/proc/{self.worker}/task/{tid}/comm").read().strip()] += 1
            except OSError:  # the thread ended meanwhile
                continue
        return names

    def pool_threads(self) -> int:
        """Gunicorn's request threads (its ThreadPoolExecutor's default names): a slow connection
        holding one would add one per connection, up to --threads."""
        return sum(n for name, n in self.thread_names().items() if name.startswith("ThreadPoolExec"))

    def fds(self) -> int:
        """Open descriptors other than the SQLite journal's own files (SQLite opens those per
        connection and thread as it likes): sockets, pipes, epoll, everything the door holds."""
        count = 0
        for fd in os.listdir(f"/proc/{self.worker}/fd"):
            try:
                target = os.readlink(f"/proc/{self.worker}/fd/{fd}")
            except OSError:
                continue
            count += not target.startswith(self.journal)
        return count

    def logs(self) -> str:
        return self.out.text() + self.err.text()

    def stop(self):
        if self.listener is not None:
            self.listener.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.out.join(5)
        self.err.join(5)


def webhook(i):
    return json.dumps({"action": "buy" if i % 2 == 0 else "sell", "ticker": "MNQ1!", "quantity": 1,
                       "id": f"door-{i}"})


def raw_exchange(port, data: bytes, *, source, timeout=5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0)) as sock:
        sock.sendall(data)
        got = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:  # closed with our request unread
                break
            if not chunk:
                break
            got += chunk
        return got

"""Answers in memory: what a worker thread's gunicorn code writes to instead of the socket.

The thread never blocks on a client that does not read: its answer goes into an
:class:`OutBuffer`, and the door (``worker.py``) sends it -- at once while the socket takes it,
then from the poller under ``HTTP_WRITE_TIMEOUT_S``.
"""
from __future__ import annotations

import errno


class OutBuffer:
    """What a thread's gunicorn code writes to instead of the socket: the answer, in memory."""

    def __init__(self):
        self.data = bytearray()
        self.close_requested = False  # gunicorn closed the "socket" (an error after headers)

    def sendall(self, data) -> None:
        self.data += data

    def send(self, data) -> int:
        self.data += data
        return len(data)

    def sendfile(self, file, offset=0, count=None):
        file.seek(offset)
        data = file.read() if count is None else file.read(count)
        self.data += data
        return len(data)

    def shutdown(self, _how) -> None:
        self.close_requested = True

    def close(self) -> None:
        self.close_requested = True

    def fileno(self) -> int:  # gunicorn never needs it here; refuse clearly if it ever does
        raise OSError(errno.EBADF, "the door's answer buffer has no descriptor")


class ThreadConn:
    """The connection as the thread's gunicorn code sees it: writes go to an :class:`OutBuffer`."""

    def __init__(self, conn, out: OutBuffer):
        self.parser = conn.parser
        self.sock = out
        self.client = conn.client
        self.server = conn.server
        self.cfg = conn.cfg

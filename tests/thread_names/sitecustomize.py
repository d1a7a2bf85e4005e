"""Test-only: gives every Python thread its name at the OS level (prctl PR_SET_NAME, 15 bytes), so
a test can tell from /proc/<pid>/task/*/comm which threads a server process holds.  Put on
PYTHONPATH of a child process (tests/test_door.py does); it changes nothing else."""
import ctypes
import threading

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: names stay as they are
    _prctl = None

_bootstrap_inner = threading.Thread._bootstrap_inner


def _named_bootstrap_inner(self):
    if _prctl is not None:
        try:
            _prctl(15, ctypes.c_char_p(self.name.encode("utf-8", "replace")[:15]), 0, 0, 0)  # PR_SET_NAME
        except Exception:  # noqa: BLE001 - naming is best effort
            pass
    _bootstrap_inner(self)


if _prctl is not None:
    threading.Thread._bootstrap_inner = _named_bootstrap_inner

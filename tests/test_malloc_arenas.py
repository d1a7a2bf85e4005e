"""malloc_arenas: the process's threads share at most MALLOC_ARENA_MAX glibc arenas, set before
any thread starts (create_app)."""
from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap

import pytest

import ultra_simple_server
from phantom_scraper.app import malloc_arenas
from phantom_scraper.config import Settings

try:
    _GLIBC = hasattr(ctypes.CDLL(None), "malloc_info") and hasattr(ctypes.CDLL(None), "mallopt")
except OSError:
    _GLIBC = False

# A fresh interpreter: optionally the limit, then eight threads alive together that each allocate
# (a thread gets an arena of its own at its first allocation while the limit allows); the arenas counted from
# glibc's own report (malloc_info: one <heap> per arena).
PROGRAM = textwrap.dedent("""
    import ctypes, re, sys, tempfile, threading
    from phantom_scraper.app import malloc_arenas
    n = int(sys.argv[1])
    if n:
        assert malloc_arenas.limit(n)
    all_in = threading.Barrier(8)
    def work():  # (alive together: an exited thread's arena is handed to the next new thread)
        blocks = [bytearray(4096) for _ in range(200)]
        all_in.wait(30)
        del blocks
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
    libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.fclose.argtypes = (ctypes.c_void_p,)
    with tempfile.NamedTemporaryFile("r") as f:
        fp = libc.fopen(f.name.encode(), b"w")
        libc.malloc_info(0, fp)
        libc.fclose(fp)
        print(len(re.findall(r"<heap nr=", f.read())))
""")


def arenas_used(limit: int) -> int:
    out = subprocess.run([sys.executable, "-c", PROGRAM, str(limit)], capture_output=True, text=True, timeout=60,
                         cwd=str(pytest.importorskip("pathlib").Path(__file__).resolve().parent.parent))
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


@pytest.mark.skipif(not _GLIBC, reason="not glibc: there are no malloc arenas to limit")
def test_threads_share_at_most_the_limit_of_arenas():
    assert arenas_used(1) == 1
    assert arenas_used(2) <= 2
    assert arenas_used(0) > 2  # glibc's default (8 per core): each of the eight threads its own


def test_zero_leaves_the_default():
    assert malloc_arenas.limit(0) is False
    assert malloc_arenas.limit(-1) is False


def test_create_app_sets_the_limit_before_anything_starts(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(malloc_arenas, "limit", lambda n: calls.append(n) or True)
    ultra_simple_server.create_app(Settings(database_path=str(tmp_path / "j.sqlite3"), malloc_arena_max=3),
                                   boot_on_first_request=False)
    assert calls == [3]
    assert Settings.from_env({}).malloc_arena_max == 2
    assert Settings.from_env({"MALLOC_ARENA_MAX": "0"}).malloc_arena_max == 0


TRIM_PROGRAM = textwrap.dedent("""
    from phantom_scraper.app import malloc_arenas
    def rss_mb():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) // 1024 for l in f if l.startswith("VmRSS"))
    blocks = [bytearray(8192) for _ in range(10000)]  # ~80 MB on the heap (below mmap's threshold)
    last = blocks[-1]  # the top block stays: free memory below it is not given back by itself
    del blocks
    before = rss_mb()
    print(before, int(malloc_arenas.trim()), rss_mb())
""")


@pytest.mark.skipif(not _GLIBC, reason="not glibc: nothing to trim")
def test_trim_gives_freed_memory_back():
    out = subprocess.run([sys.executable, "-c", TRIM_PROGRAM], capture_output=True, text=True, timeout=60,
                         cwd=str(pytest.importorskip("pathlib").Path(__file__).resolve().parent.parent))
    assert out.returncode == 0, out.stderr
    before, trimmed, after = map(int, out.stdout.split())
    assert before - after > 40 and trimmed == 1, out.stdout


def test_each_housekeeping_pass_ends_with_a_trim(monkeypatch):
    from phantom_scraper.app.housekeeping import Housekeeping

    calls = []
    monkeypatch.setattr(malloc_arenas, "trim", lambda: calls.append(1) or True)
    keeper = Housekeeping(Settings(journal_retention_days=0), None, None, lambda: [])
    keeper.run_once()
    keeper.run_once()
    assert calls == [1, 1] and keeper.status()["memory_trims"] == 2

"""Does the SQLite journal's directory look like it survives a redeploy?

Procfile platforms (Heroku, Railway, Render, ...) give a process a disk that a redeploy wipes unless
a volume is attached; with it goes the journal (durable dedupe, unknown-intent settlement, history).
This module only looks and warns; it never refuses to start.  The look: the filesystem holding the
directory (``/proc/self/mountinfo``) and the platform's own environment variables.
"""
from __future__ import annotations

import logging
import os
from typing import Mapping, Optional, Tuple

from phantom_scraper.config import PLATFORM_VARS

log = logging.getLogger(__name__)

MEMORY_FILESYSTEMS = ("tmpfs", "ramfs")


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mount_of(path: str, mountinfo: str) -> Tuple[str, str]:
    """``(mount_point, fstype)`` of the mount holding ``path`` (an absolute, resolved path)."""
    best = ("/", "")
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split():
            continue
        point = _unescape(fields[4])
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, right.split()[0])
    return best


def _existing_ancestor(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return os.path.realpath(path)


def ephemeral_reason(folder: str, env: Optional[Mapping[str, str]] = None,
                     mountinfo: Optional[str] = None) -> Optional[str]:
    """Why ``folder`` looks wiped at restart or redeploy, or None when nothing says so."""
    env = os.environ if env is None else env
    path = os.path.abspath(folder)
    if mountinfo is None:  # this machine: resolve symlinks of what exists so far
        path = _existing_ancestor(folder)
        try:
            with open("/proc/self/mountinfo", "r", encoding="utf-8") as fh:
                mountinfo = fh.read()
        except OSError:
            mountinfo = ""
    point, fstype = mount_of(path, mountinfo)
    if fstype in MEMORY_FILESYSTEMS:
        return f"{folder} is on {fstype} (memory): every restart loses it"
    platform = next((name for var, name in PLATFORM_VARS if env.get(var)), None)
    if platform == "Heroku":
        return "Heroku dynos have no volumes: every restart and redeploy wipes the disk"
    if platform and point == "/":
        return (f"running on {platform} with {folder} on the container's own disk, not on a volume: "
                "every redeploy wipes it")
    return None


def warn_if_ephemeral(database_path: str, env: Optional[Mapping[str, str]] = None,
                      mountinfo: Optional[str] = None) -> Optional[str]:
    """Log a warning when the SQLite journal's directory looks ephemeral; returns the reason."""
    folder = os.path.dirname(os.path.abspath(database_path))
    reason = ephemeral_reason(folder, env, mountinfo)
    if reason:
        log.warning("The SQLite journal at %s looks ephemeral (%s). Dedupe, in-flight order "
                    "settlement and history would be lost: mount a volume there (DATABASE_PATH), "
                    "or set DATABASE_URL to a PostgreSQL database.", database_path, reason)
    return reason

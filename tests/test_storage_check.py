"""The start-up warning for an SQLite journal on a disk that a redeploy wipes."""
from __future__ import annotations

import logging

from phantom_scraper.journal.storage_check import ephemeral_reason, mount_of, warn_if_ephemeral

CONTAINER = """\
100 90 0:50 / / rw,relatime - overlay overlay rw,lowerdir=/a,upperdir=/b
101 100 0:51 / /proc rw - proc proc rw
102 100 8:1 /vol /data rw,relatime - ext4 /dev/sda1 rw
103 100 0:52 / /tmp rw - tmpfs tmpfs rw
104 100 8:2 / /my\\040volume rw - ext4 /dev/sdb rw
"""


def test_mount_of_picks_the_longest_mount_point():
    assert mount_of("/app/data", CONTAINER) == ("/", "overlay")
    assert mount_of("/data/journal", CONTAINER) == ("/data", "ext4")
    assert mount_of("/database", CONTAINER) == ("/", "overlay")  # a prefix of the name is not a parent
    assert mount_of("/my volume/x", CONTAINER) == ("/my volume", "ext4")


def test_platform_without_a_volume_is_ephemeral_with_a_volume_it_is_not():
    env = {"RAILWAY_ENVIRONMENT": "production"}
    assert "Railway" in ephemeral_reason("/app/data", env, CONTAINER)
    assert ephemeral_reason("/data", env, CONTAINER) is None
    assert ephemeral_reason("/app/data", {}, CONTAINER) is None  # a plain container: no claim


def test_memory_filesystems_and_heroku_always_warn():
    assert "tmpfs" in ephemeral_reason("/tmp/data", {}, CONTAINER)
    assert "Heroku" in ephemeral_reason("/data", {"DYNO": "web.1"}, CONTAINER)


def test_warning_is_logged_once_with_the_remedy(caplog):
    with caplog.at_level(logging.WARNING, logger="phantom_scraper.journal.storage_check"):
        reason = warn_if_ephemeral("/app/data/journal.sqlite3", {"RENDER": "true"}, CONTAINER)
    assert reason and "Render" in reason
    [record] = caplog.records
    assert "DATABASE_URL" in record.getMessage() and "/app/data/journal.sqlite3" in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="phantom_scraper.journal.storage_check"):
        assert warn_if_ephemeral("/data/journal.sqlite3", {"RENDER": "true"}, CONTAINER) is None
    assert caplog.records == []

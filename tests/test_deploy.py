"""The deploy kit (deploy/): the image runs the Procfile's command as a non-root user with a volume
for data/ and a health check; compose.yaml parses and wires the app, PostgreSQL and Caddy; the
systemd unit parses (and verifies, where systemd-analyze is installed).  The image itself is
built by .ci/run when a Docker daemon is available."""
from __future__ import annotations

import configparser
import pathlib
import re
import shlex
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def procfile_command() -> str:
    [line] = [ln for ln in (ROOT / "Procfile").read_text().splitlines() if ln.startswith("web:")]
    return line[len("web:"):].strip()


def test_the_procfile_reads_its_threads_from_gunicorn_conf():
    command = shlex.split(procfile_command())
    assert command[0] == "gunicorn" and "--threads" not in command
    assert command[command.index("--workers") + 1] == "1"
    assert command[command.index("--worker-class") + 1] == "phantom_scraper.door.worker.DoorWorker"
    assert command[command.index("--config") + 1] == "gunicorn.conf.py"
    conf = (ROOT / "gunicorn.conf.py").read_text()
    assert "threads = _SETTINGS.gunicorn_threads" in conf


def test_gunicorn_threads_sets_the_threads_of_the_procfile_command():
    import os
    import sys

    argv = shlex.split(procfile_command().replace("0.0.0.0:$PORT", "127.0.0.1:0"))
    argv[0] = str(pathlib.Path(sys.executable).parent / "gunicorn")
    env = {**os.environ, "GUNICORN_THREADS": "7"}
    out = subprocess.run(argv[:-1] + ["--print-config", argv[-1]], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120).stdout
    config = dict(re.findall(r"^(\w+)\s+= (.*)$", out, re.M))
    assert config["threads"] == "7" and config["workers"] == "1"


def test_the_dockerfile_runs_the_procfile_command_as_a_non_root_user():
    text = (DEPLOY / "Dockerfile").read_text()
    [base] = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert base.endswith("-slim")
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r'^VOLUME\s+\["/app/data"\]', text, re.M)
    assert re.search(r"^HEALTHCHECK .*\n?.*/health", text, re.M)
    [cmd] = re.findall(r"^CMD\s+(\[.*\])", text, re.M)
    import json
    argv = json.loads(cmd)
    assert argv[:2] == ["sh", "-c"] and argv[2] == "exec " + procfile_command()
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".env" in ignore and "data/" in ignore and ".venv/" in ignore  # no secrets or state in the image


def test_compose_wires_the_app_postgres_and_caddy():
    yaml = pytest.importorskip("yaml")  # pinned in requirements-dev.txt
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = doc["services"]
    assert set(services) == {"app", "db", "caddy"}
    app = services["app"]
    assert (DEPLOY / app["build"]["context"] / app["build"]["dockerfile"]).resolve() == (DEPLOY / "Dockerfile").resolve()
    assert app["environment"]["DATABASE_URL"].startswith("postgresql://") and "@db:5432/" in app["environment"]["DATABASE_URL"]
    assert any(v.endswith(":/app/data") for v in app["volumes"])
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["db"]["image"].startswith("postgres:") and "healthcheck" in services["db"]
    caddy = services["caddy"]
    assert caddy["image"].startswith("caddy:") and {"80:80", "443:443"} <= set(caddy["ports"])
    [caddyfile] = [v.split(":")[0] for v in caddy["volumes"] if v.endswith("/etc/caddy/Caddyfile:ro")]
    site = (DEPLOY / caddyfile).read_text()
    assert "reverse_proxy app:8080" in site and "{$DOMAIN}" in site
    assert set(doc["volumes"]) >= {"app-data", "pg-data", "caddy-data"}


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string((DEPLOY / "phantom-scraper.service").read_text())
    return unit


def test_the_systemd_unit_parses_and_runs_the_procfile_command():
    unit = _unit()
    assert set(unit.sections()) == {"Unit", "Service", "Install"}
    service = unit["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/.venv/bin/gunicorn")
    expected = shlex.split(procfile_command())[1:]
    expected[expected.index("--bind") + 1] = "127.0.0.1:${PORT}"  # behind a local TLS proxy
    assert argv[1:] == expected
    assert service["User"] != "root" and service["KillSignal"] == "SIGTERM"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_unit(tmp_path):
    # verify wants ExecStart's program to exist: the same unit with a program that does
    text = (DEPLOY / "phantom-scraper.service").read_text()
    copy = tmp_path / "phantom-scraper.service"
    copy.write_text(text.replace("/opt/phantom-scraper/.venv/bin/gunicorn", shutil.which("true")))
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_guide_covers_platforms_backup_restore_and_upgrade():
    guide = (DEPLOY / "README.md").read_text()
    for words in ("Railway", "Render", "Fly.io", "systemd", ".backup", "pg_dump", "pg_restore", "Upgrading",
                  "migrated to schema"):
        assert words in guide, words


def test_the_sqlite_online_backup_the_guide_shows_copies_a_live_journal(tmp_path):
    """The guide's Python one-liner backs up a journal that is open (WAL) and being written."""
    from phantom_scraper.journal.journal import Journal

    (tmp_path / "data").mkdir()
    journal = Journal(str(tmp_path / "data" / "journal.sqlite3"))
    try:
        journal.record_signal("default", {"action": "buy", "ticker": "NQ1!"}, "backup-1", None, 5.0)
        [line] = [ln for ln in (DEPLOY / "README.md").read_text().splitlines()
                  if ln.startswith("python3 -c \"import sqlite3")]
        argv = shlex.split(line)
        subprocess.run([shutil.which("python3") or "python3"] + argv[1:-1] + [str(tmp_path / "copy.sqlite3")],
                       cwd=tmp_path, check=True, timeout=60)
    finally:
        journal.close()
    copy = Journal(str(tmp_path / "copy.sqlite3"))
    try:
        _, duplicate, _ = copy.record_signal("default", {"action": "buy", "ticker": "NQ1!"}, "backup-1", None, 5.0)
        assert duplicate, "the copy knows the signal id"
    finally:
        copy.close()

"""Every environment variable is in one table (config.VARIABLES) and in the README's table, and
only config.py reads the environment (plus the two readers the table names)."""
from __future__ import annotations

import ast
import dataclasses
import pathlib
import re
import runpy
import subprocess
import sys

import pytest

from phantom_scraper.config import VARIABLES, ConfigError, Credentials, RiskSettings, Settings

ROOT = pathlib.Path(__file__).resolve().parent.parent
PRODUCT_FILES = sorted(ROOT.glob("*.py")) + sorted((ROOT / "phantom_scraper").rglob("*.py"))
TABLE = {v.name for v in VARIABLES}
# Besides config.py: the simulator (a program of its own) reads its calendar pin, phantom_scraper/journal/storage_check.py
# the hosting platforms' variables (PLATFORM_VARS, in the table), and phantom_scraper/app/recorders.py the variables a
# RECORDERS_FILE names (their names are the user's, not the code's).
OTHER_READERS = {"phantom_scraper/tradovate_sim/exchange.py", "phantom_scraper/app/recorders.py",
                 "phantom_scraper/journal/storage_check.py"}
READ_HELPERS = {"_float", "_int", "_bool", "_str", "_csv"}


def _is_os_environ(node) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ"
            and isinstance(node.value, ast.Name) and node.value.id == "os")


def env_reads(path: pathlib.Path):
    """(variable names read with a literal name, whether the file touches os.environ/os.getenv)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names, touches = set(), False
    for node in ast.walk(tree):
        if _is_os_environ(node) or (isinstance(node, ast.Attribute) and node.attr == "getenv"
                                    and isinstance(node.value, ast.Name) and node.value.id == "os"):
            touches = True
        literal = None
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in ("get", "getenv") and node.args:
                target = func.value
                if _is_os_environ(target) or (isinstance(target, ast.Name) and target.id in ("os", "env", "environ")):
                    literal = node.args[0]
            elif isinstance(func, ast.Name) and func.id in READ_HELPERS | {"Variable"} and node.args:
                literal = node.args[1] if func.id in READ_HELPERS and len(node.args) > 1 else node.args[0]
        elif isinstance(node, ast.Subscript) and (_is_os_environ(node.value) or (
                isinstance(node.value, ast.Name) and node.value.id == "env")):
            literal = node.slice
        if isinstance(literal, ast.Constant) and isinstance(literal.value, str):
            names.add(literal.value)
    return names, touches


def test_every_variable_read_anywhere_is_in_the_table():
    read = {}
    for path in PRODUCT_FILES:
        for name in env_reads(path)[0]:
            read.setdefault(name, str(path.relative_to(ROOT)))
    from phantom_scraper.journal.storage_check import PLATFORM_VARS

    for name, _platform in PLATFORM_VARS:  # read in a loop, so named here
        read.setdefault(name, "phantom_scraper/journal/storage_check.py")
    assert {n: f for n, f in read.items() if n not in TABLE} == {}
    assert {"PORT", "HOST", "LOG_LEVEL", "GUNICORN_THREADS", "SHUTDOWN_TIMEOUT_S"} <= set(read)


def test_only_config_reads_the_environment():
    touching = {str(p.relative_to(ROOT)) for p in PRODUCT_FILES if env_reads(p)[1]}
    assert touching - OTHER_READERS == {"phantom_scraper/config.py"}


def test_the_readme_table_lists_every_variable_of_the_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = "\n".join(line.split(" | ")[0] for line in section.splitlines() if line.startswith("|"))
    in_readme = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", rows))
    assert TABLE - in_readme == set(), "add them to the README's Configuration table"
    assert in_readme - TABLE == set(), "the README names variables the code does not read"


def test_each_variable_sets_a_settings_field():
    fields = {f.name for f in dataclasses.fields(Settings)}
    login_fields = {f.name for f in dataclasses.fields(Credentials)}
    risk_fields = {f.name for f in dataclasses.fields(RiskSettings)}
    for var in VARIABLES:
        if var.field is None:
            continue
        if var.field.startswith("credentials."):
            assert var.field.split(".", 1)[1] in login_fields, var
        elif var.field.startswith("risk."):  # the risk guard's group (Settings.risk)
            assert var.field.split(".", 1)[1] in risk_fields, var
        else:
            assert var.field in fields, var
    assert len(TABLE) == len(VARIABLES), "a variable is listed twice"


def test_from_env_reads_every_variable_through_the_table():
    env = {"TRADOVATE_ENV": "Demo", "TRADOVATE_USERNAME": "u", "TRADOVATE_PASSWORD": "p", "TRADOVATE_CID": "7",
           "PORT": "9090", "HOST": "0.0.0.0", "LOG_LEVEL": "debug", "LOG_WEBSOCKET_FRAMES": "1",
           "GUNICORN_THREADS": "8", "GRACEFUL_TIMEOUT_S": "20", "SHUTDOWN_TIMEOUT_S": "2.5", "ACCESS_LOG": "0",
           "WEBHOOK_IP_ALLOWLIST": "10.0.0.1, 10.0.0.2", "MAX_BODY_BYTES": "1000", "TRADOVATE_ACCOUNTS": "A,B"}
    s = Settings.from_env(env)
    assert (s.tradovate_env, s.port, s.host, s.log_level, s.log_websocket_frames) == ("demo", 9090, "0.0.0.0", "debug", True)
    assert (s.gunicorn_threads, s.graceful_timeout_s, s.shutdown_timeout_s, s.access_log) == (8, 20, 2.5, False)
    assert s.ip_allowlist == ("10.0.0.1", "10.0.0.2") and s.ip_allowlist_enabled
    assert s.max_body_bytes == 1000 and s.accounts_filter == ("A", "B")
    assert s.credentials == Credentials(username="u", password="p", cid="7")
    defaults = Settings.from_env({})
    assert defaults == Settings() and defaults.credentials is None
    with pytest.raises(ConfigError, match="PORT"):
        Settings.from_env({"PORT": "eighty"})


def test_gunicorn_conf_takes_its_values_from_settings(monkeypatch):
    monkeypatch.setenv("GUNICORN_THREADS", "7")
    monkeypatch.setenv("ACCESS_LOG", "0")
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert conf["threads"] == 7 and conf["accesslog"] is None


def test_local_server_reads_port_and_host_from_settings(tmp_path):
    """``python ultra_simple_server.py`` with a bad PORT fails naming it (read through Settings)."""
    env = {"PATH": "", "PORT": "not-a-port", "DATABASE_PATH": str(tmp_path / "j.sqlite3")}
    proc = subprocess.run([sys.executable, str(ROOT / "ultra_simple_server.py")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "PORT must be an integer" in proc.stderr


# -- .env.example and the README's table: generated from / checked against VARIABLES -----------------

def _readme_rows():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]


def test_env_example_is_generated_from_the_table():
    from phantom_scraper.config import env_example

    assert (ROOT / ".env.example").read_text(encoding="utf-8") == env_example(), \
        "regenerate it: python -m phantom_scraper.config > .env.example"


def test_env_example_lists_every_variable_you_set_with_its_default():
    from phantom_scraper.config import default_text

    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    written = dict(re.findall(r"^# ([A-Z][A-Z0-9_]+)=(.*)$", text, re.M))
    ours = {v.name for v in VARIABLES if v.field is not None}
    assert set(written) == ours
    defaults = Settings()
    for var in VARIABLES:
        if var.field is None:
            continue
        assert written[var.name] == default_text(var)
        # the written default, read back, is the default: uncommenting a line changes nothing
        env = {var.name: written[var.name]}
        if var.field.startswith("credentials."):
            env["TRADOVATE_USERNAME"] = env.get("TRADOVATE_USERNAME") or "u"
            got = getattr(Settings.from_env(env).credentials, var.field.split(".", 1)[1])
            want = getattr(Credentials(username="u", password=""), var.field.split(".", 1)[1])
            assert got == (want if var.name != "TRADOVATE_USERNAME" else "u"), var.name
            continue
        read = Settings.from_env(env)
        if var.field.startswith("risk."):
            name = var.field.split(".", 1)[1]
            assert getattr(read.risk, name) == getattr(defaults.risk, name), var.name
        else:
            assert getattr(read, var.field) == getattr(defaults, var.field), var.name


def test_the_readme_has_one_row_per_variable_with_its_default():
    from phantom_scraper.config import default_text

    rows = _readme_rows()
    names = [re.fullmatch(r"`([A-Z][A-Z0-9_]+)`", row[0]) for row in rows]
    assert all(names), [row[0] for row, m in zip(rows, names) if not m]
    listed = [m.group(1) for m in names]
    assert len(listed) == len(set(listed)), "a variable has two rows"
    assert set(listed) == TABLE
    for name, row in zip(listed, rows):
        [var] = [v for v in VARIABLES if v.name == name]
        default = default_text(var)
        expected = "(set by others)" if default is None else "(empty)" if default == "" else f"`{default}`"
        assert row[1] == expected, name

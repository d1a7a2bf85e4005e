"""The wiring rules, checked on the source (ast): imports go one way."""
from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOP_LEVEL_MODULES = {p.stem for p in ROOT.glob("*.py")}  # recorder_service, ultra_simple_server, ...


def imported_modules(path: pathlib.Path):
    """Every module name a file imports (absolute names; relative imports resolved to the package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(p for p in parts + [base] if p)
            yield base
            for alias in node.names:  # "from tests import test_pool" imports a module too
                yield f"{base}.{alias.name}" if base else alias.name


def test_the_top_level_modules_the_rule_names_exist():
    assert {"recorder_service", "ultra_simple_server"} <= TOP_LEVEL_MODULES


def test_nothing_under_phantom_scraper_imports_a_top_level_module():
    offenders = []
    for path in sorted((ROOT / "phantom_scraper").rglob("*.py")):
        for name in imported_modules(path):
            if name.split(".")[0] in TOP_LEVEL_MODULES:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_no_test_module_imports_another_test_module():
    """Shared helpers live in tests/helpers.py (fixtures in tests/conftest.py): no module under
    tests/ imports a test module (``test_*``) or conftest."""
    offenders = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for name in imported_modules(path):
            parts = name.split(".")
            module = parts[1] if parts[0] == "tests" and len(parts) > 1 else parts[0]
            if module.startswith("test_") or module == "conftest":
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == [], "move what is shared to tests/helpers.py"


def test_every_module_docs_design_names_exists():
    """docs/DESIGN.md matches the code: every file, folder and dotted name it mentions is there."""
    import importlib
    import re

    text = (ROOT / "docs" / "DESIGN.md").read_text(encoding="utf-8")
    missing = []
    for path in sorted(set(re.findall(r"[\w./]*\w\.py\b", text))):
        found = (ROOT / path).is_file() if "/" in path else any(ROOT.rglob(path))
        if not found:
            missing.append(path)
    for folder in sorted(set(re.findall(r"\b((?:phantom_scraper|tests|bench)/[\w/]*)/(?![\w.])", text))):
        if not (ROOT / folder).is_dir():
            missing.append(folder + "/")
    for dotted in sorted(set(re.findall(r"\b(?:phantom_scraper|recorder_service|ultra_simple_server)(?:\.(?!py\b)\w+)*", text))):
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for attr in parts[cut:]:
                obj = getattr(obj, attr, None)
                if obj is None:
                    missing.append(dotted)
                    break
            break
        else:
            missing.append(dotted)
    assert missing == []


def test_the_code_points_only_at_docs_in_the_repository():
    """Protocol facts and lessons live in docs/ (TRADOVATE.md, LESSONS.md); the code cites those,
    never a file outside the repository."""
    import re

    cited = re.compile(r"\bPROTOCOL\b|(?<!docs/)LESSONS\.md|PROTOCOL\.md")
    offenders = []
    for path in sorted(ROOT.glob("*.py")) + sorted((ROOT / "phantom_scraper").rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if cited.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == [], "cite docs/TRADOVATE.md or docs/LESSONS.md"
    for doc in re.findall(r"docs/(\w+\.md)", "\n".join(p.read_text(encoding="utf-8") for p in
                                                      sorted((ROOT / "phantom_scraper").rglob("*.py")))):
        assert (ROOT / "docs" / doc).is_file(), doc


def test_recorder_service_keeps_its_documented_names_and_re_exports_no_privates():
    import recorder_service

    for name in ("_WS_POOL", "_WS_POOL_LOCK", "get_pooled_connection", "start_websocket_keepalive_daemon",
                 "execute_trade_simple", "WebSocketPool"):
        assert hasattr(recorder_service, name), name
    entry = recorder_service.execute_trade_simple
    assert entry.__module__ == "recorder_service" and entry.__doc__  # one explicit, documented entry point
    borrowed_privates = [name for name, value in vars(recorder_service).items()
                         if name.startswith("_") and not name.startswith("__") and callable(value)
                         and getattr(value, "__module__", "recorder_service") != "recorder_service"
                         and getattr(value, "__name__", name) == name]
    assert borrowed_privates == []  # e.g. execution's _executor

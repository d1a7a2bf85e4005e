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

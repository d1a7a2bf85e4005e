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


# -- the floor plan (docs/DESIGN.md, "Floor plan") ---------------------------------------------
# Each unit of the package and its floor.  A module may import its own unit and any unit on a lower
# floor; never a unit above, never another unit on the same floor.  The ground floor is what every
# layer uses.  tradovate_integration.py stays at the package root (the product's documented layout
# names it) but belongs to the Tradovate floor.
FLOORS = {
    "ground": 0,  # config, errors, events, hours, redact
    "tradovate": 1, "journal": 1, "signals": 1,
    "strategies": 2, "ops": 2,
    "execution": 3,
    "risk": 4,
    "app": 5,
    "web": 6, "door": 6,
}
GROUND = {"config", "errors", "events", "hours", "redact"}
PACKAGE = ROOT / "phantom_scraper"


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    if parts[1] == "tradovate_integration":
        return "tradovate"
    if parts[1] in GROUND:
        return "ground"
    return parts[1]


def _package_modules():
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "tradovate_sim" not in p.parts}


def _package_imports():
    """{module: {imported package module, ...}} for every module of the package but the simulator."""
    modules = _package_modules()
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in imported_modules(path):
            while imported and imported not in modules:  # "pkg.mod.attr" -> "pkg.mod"
                imported = imported.rpartition(".")[0]
            if imported and imported != name and imported != "phantom_scraper":
                targets.add(imported)
        graph[name] = targets
    return graph


def test_every_package_unit_has_a_floor():
    units = {_unit(m) for m in _package_modules()} - {"package"}
    assert units <= set(FLOORS), sorted(units - set(FLOORS))


def test_imports_run_down_the_floors_never_up_or_sideways():
    offenders = []
    for module, targets in sorted(_package_imports().items()):
        unit = _unit(module)
        if unit == "package":
            continue
        for target in sorted(targets):
            other = _unit(target)
            if other == unit:
                continue
            if FLOORS[other] >= FLOORS[unit]:
                offenders.append(f"{module} ({unit}, floor {FLOORS[unit]}) imports {target} "
                                 f"({other}, floor {FLOORS[other]})")
    assert offenders == []


def test_no_import_cycle_in_the_package():
    graph = _package_imports()
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert cycles == []


def test_the_simulator_imports_nothing_from_the_product():
    offenders = []
    for path in sorted((PACKAGE / "tradovate_sim").rglob("*.py")):
        for name in imported_modules(path):
            if name.startswith("phantom_scraper") and not name.startswith("phantom_scraper.tradovate_sim"):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_the_package_root_holds_at_most_twelve_modules_and_keeps_tradovate_integration():
    root_modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert "tradovate_integration.py" in root_modules
    assert len(root_modules) <= 12, root_modules


MAX_MODULE_LINES = 600


def test_no_product_module_is_over_600_lines():
    """Small modules with one job: the package (the simulator included) and the top-level modules."""
    modules = list(PACKAGE.rglob("*.py")) + [ROOT / f"{name}.py" for name in TOP_LEVEL_MODULES]
    long = {str(p.relative_to(ROOT)): n for p in modules
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"split these by responsibility (at most {MAX_MODULE_LINES} lines each): {long}"

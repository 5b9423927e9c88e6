"""Imports flow downward: policies and probes build on encoders, never on each other's modules, and
encoders know neither. Checked by parsing every import statement (top-level and inside functions)."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "toto_robot"

# package -> packages its modules must not import
FORBIDDEN = {
    "policies": ("toto_robot.probes",),
    "encoders": ("toto_robot.probes", "toto_robot.policies"),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in ``path``; relative imports resolved against its package."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]  # "from toto_robot import probes"
    return found


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = {}  # one report per import statement
    for path in sorted((PACKAGE / package).rglob("*.py")):
        for line, module in imported_modules(path):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                bad.setdefault(f"{path.relative_to(PACKAGE.parent)}:{line}", f"imports {module}")
    return [f"{where} {what}" for where, what in bad.items()]


def test_policies_and_encoders_do_not_import_upward():
    for package, forbidden in FORBIDDEN.items():
        assert not violations(package, forbidden), violations(package, forbidden)


def test_the_check_sees_every_import_form(tmp_path, monkeypatch):
    # the checker itself: absolute, from-, relative and function-local imports of a forbidden package are all caught
    root = tmp_path / "toto_robot"
    (root / "policies").mkdir(parents=True)
    (root / "policies" / "a.py").write_text("import toto_robot.probes.sweep\n")
    (root / "policies" / "b.py").write_text("from toto_robot.probes.sweep import layer_sweep\n")
    (root / "policies" / "c.py").write_text("from ..probes import sweep\n")
    (root / "policies" / "d.py").write_text("def f():\n    from toto_robot import probes\n")
    (root / "policies" / "ok.py").write_text("from toto_robot.encoders.features import extract_encoder_tokens\nfrom . import policy\n")
    monkeypatch.setitem(globals(), "PACKAGE", root)
    found = violations("policies", ("toto_robot.probes",))
    assert sorted(f.split(":")[0].rsplit("/", 1)[-1] for f in found) == ["a.py", "b.py", "c.py", "d.py"], found

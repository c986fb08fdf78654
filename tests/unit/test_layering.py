"""Dependencies point inward: production packages never import the simulators, and the domain
(`otphsm/core`) imports no device or transport library and nothing of ours outside itself.
Read from the source with `ast`, so an import under TYPE_CHECKING or inside a function counts."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "otphsm"
PRODUCTION = ("service", "core", "hsm", "store", "client", "gateways", "pskc", "smartcard")
"""Packages that never import `otphsm.simulators` (a name may still be a module, client.py)."""
SIMULATORS = "otphsm.simulators"
NOT_IN_CORE = {
    "grpc": "gRPC",
    "pkcs11": "python-pkcs11",
    "smartcard": "pyscard",
    "psycopg": "psycopg",
}
"""Top-level names (grpc_status, psycopg_pool, psycopg2 count as their family)."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _files(name: str) -> list[Path]:
    directory = PACKAGE_ROOT / name
    if directory.is_dir():
        return sorted(directory.rglob("*.py"))
    module = PACKAGE_ROOT / f"{name}.py"
    return [module] if module.is_file() else []


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute name) of everything the module imports, `from a import b` giving both
    `a` and `a.b` (b may be a submodule); relative imports resolved against the module."""
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _library(name: str) -> str | None:
    root = name.split(".", maxsplit=1)[0]
    for family, library in NOT_IN_CORE.items():
        if root == family or root.startswith((f"{family}_", f"{family}2")):
            return library
    return None


def _offending(package: str, forbidden: Callable[[str], str | None]) -> list[str]:
    """ "file:line imports name (why)", once per import statement."""
    found: dict[tuple[Path, int], str] = {}
    for path in _files(package):
        for line, name in _imports(path):
            why = forbidden(name)
            if why is not None and (path, line) not in found:
                where = path.relative_to(PACKAGE_ROOT.parent)
                found[path, line] = f"{where}:{line} imports {name}{why}"
    return list(found.values())


def test_the_production_packages_exist() -> None:
    present = {name for name in PRODUCTION if _files(name)}
    assert {"core", "service", "hsm", "store", "smartcard", "gateways", "pskc"} <= present


@pytest.mark.parametrize("package", PRODUCTION)
def test_production_code_imports_no_simulator(package: str) -> None:
    found = _offending(package, lambda name: "" if _within(name, SIMULATORS) else None)
    assert not found, f"otphsm/{package} must not import {SIMULATORS}:\n" + "\n".join(found)


def test_the_domain_imports_no_device_or_transport_library() -> None:
    found = _offending("core", lambda name: (lib := _library(name)) and f" ({lib})")
    assert not found, "otphsm/core stays pure:\n" + "\n".join(found)


def test_the_domain_imports_nothing_of_ours_outside_itself() -> None:
    def ours(name: str) -> str | None:
        outside = _within(name, "otphsm") and name != "otphsm" and not _within(name, "otphsm.core")
        return "" if outside else None

    found = _offending("core", ours)
    assert not found, "otphsm/core depends on nothing of ours:\n" + "\n".join(found)

"""Dependencies point one way: the package-level import graph against the declared layers (docs/architecture.md).

Every module of the installed package (``robustbench_nas/`` and the folders installed into it: ``attacks/``,
``corruptions/``, ``pipelines/``) is parsed with :mod:`ast`, not imported. Every ``import`` / ``from ... import``
statement that names ``robustbench_nas`` (absolute or relative) counts, wherever it sits: at module level, inside
a function or a class, under ``if TYPE_CHECKING`` or in a ``try``. A function-level import is still a dependency
(it runs as soon as the function does), so hiding an upward import inside a function does not make it legal.
Imports by name at run time (``importlib.import_module``) are not statements and are not counted: the one place
that does it on purpose is ``search_spaces/networks.py``, the registry through which a space finds the network
builder that the layer above registered (the rule is documented there and in docs/architecture.md).

Checked:

1. a package imports only packages of its own layer or below (``LAYERS``);
2. no cycle between packages (within one layer, imports must not go both ways);
3. no cycle between modules, apart from the allow-listed ones (``KNOWN_MODULE_CYCLES``), each owned by work in
   progress and removed when it lands; an allow-list entry that no longer matches a cycle also fails, so the list
   only shrinks.

Each failure names the offending ``file:line``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: source folder -> the package name it is installed as (pyproject.toml ``package-dir``)
SOURCES: dict[str, str] = {
    "robustbench_nas": "robustbench_nas",
    "attacks": "robustbench_nas.attacks",
    "corruptions": "robustbench_nas.corruptions",
    "pipelines": "robustbench_nas.pipelines",
}

#: Bottom to top. A package may import its own layer and the layers below, never a layer above. ``<root>`` is
#: ``robustbench_nas/__init__.py`` (``__version__``); ``constants`` holds the numbers spaces and models share.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"<root>", "utils", "constants"}),
    frozenset({"search_spaces", "data"}),
    frozenset({"models", "attacks", "corruptions", "measures", "proxies", "evaluation"}),
    frozenset({"training", "storage"}),
    frozenset({"pipelines"}),
    frozenset({"analysis"}),
    frozenset({"cli"}),
)

#: Module cycles another piece of work in progress removes (issue 25, "split" of report.py and slurm.py). Each entry
#: is the exact set of modules of one strongly connected component; the lead deletes the entry when the split is
#: merged (the test fails while a listed cycle no longer exists, so a stale entry cannot linger).
KNOWN_MODULE_CYCLES: tuple[frozenset[str], ...] = ()  # none left: report <-> studies and runner <-> slurm are split


@dataclass(frozen=True)
class Import:
    """One import statement's dependency: ``source`` module imports ``target`` module, at ``where`` (file:line)."""

    source: str
    target: str
    where: str


def _modules() -> dict[str, tuple[Path, bool]]:
    """Installed module name -> (file, is a package ``__init__``)."""
    out: dict[str, tuple[Path, bool]] = {}
    for folder, installed in SOURCES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = installed.split(".") + list(path.relative_to(ROOT / folder).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _imports(modules: dict[str, tuple[Path, bool]], root: Path = ROOT) -> list[Import]:
    """Every import statement naming the package, resolved to the deepest existing module it loads (source order)."""
    found: list[Import] = []

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    for mod, (path, is_pkg) in modules.items():
        package = mod if is_pkg else mod.rpartition(".")[0]
        where = f"{path.relative_to(root)}"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    if node.level - 1 > len(base) - 1:
                        raise AssertionError(f"{where}:{node.lineno}: relative import beyond the package")
                    base = base[: len(base) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                # ``from pkg import name`` loads the submodule ``pkg.name`` when there is one
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in modules else stem for a in node.names]
            for t in targets:
                if t == "robustbench_nas" or t.startswith("robustbench_nas."):
                    target = resolve(t)
                    if target is None:
                        raise AssertionError(f"{where}:{node.lineno}: import of unknown module {t!r}")
                    if target != mod:
                        found.append(Import(mod, target, f"{where}:{node.lineno}"))
    return sorted(found, key=lambda i: (i.where.rpartition(":")[0], int(i.where.rpartition(":")[2])))


def _package(module: str) -> str:
    """The layer unit of a module: ``robustbench_nas.<first part>`` (``<root>`` for the package's ``__init__``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<root>"


def _layer(package: str) -> int:
    for level, members in enumerate(LAYERS):
        if package in members:
            return level
    raise AssertionError(f"package {package!r} is in no layer: add it to LAYERS here and to docs/architecture.md")


def _cycles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[frozenset[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.add(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(frozenset(comp))
    return out


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    found = _imports(_modules())
    assert len(found) > 100, "the parser found almost no imports: is the source layout as SOURCES says?"
    return found


def test_every_package_is_in_a_layer(imports: list[Import]) -> None:
    packages = {_package(m) for m in _modules()}
    for p in sorted(packages):
        _layer(p)
    declared = set().union(*LAYERS)
    assert not declared - packages, f"LAYERS names packages that do not exist: {sorted(declared - packages)}"


def test_imports_point_down(imports: list[Import]) -> None:
    """A package imports only its own layer or the layers below it."""
    bad = [f"{i.where}: {_package(i.source)} (layer {_layer(_package(i.source))}) imports {i.target} "
           f"(layer {_layer(_package(i.target))})" for i in imports
           if _layer(_package(i.target)) > _layer(_package(i.source))]
    assert not bad, "imports that point up a layer:\n" + "\n".join(bad)


def test_no_cycle_between_packages(imports: list[Import]) -> None:
    """Within a layer imports may go one way only (e.g. proxies -> measures, never back)."""
    edges: dict[str, set[str]] = {}
    for i in imports:
        a, b = _package(i.source), _package(i.target)
        if a != b:
            edges.setdefault(a, set()).add(b)
    cycles = _cycles(edges)
    lines = dict.fromkeys(f"{i.where}: {_package(i.source)} -> {_package(i.target)}" for c in cycles for i in imports
                          if _package(i.source) in c and _package(i.target) in c
                          and _package(i.source) != _package(i.target))
    assert not cycles, f"import cycles between packages {[sorted(c) for c in cycles]}:\n" + "\n".join(lines)


def test_no_cycle_between_modules(imports: list[Import]) -> None:
    """No module imports (directly or through others) a module that imports it back, apart from the allow-list."""
    edges: dict[str, set[str]] = {}
    for i in imports:
        edges.setdefault(i.source, set()).add(i.target)
    cycles = _cycles(edges)
    new = [c for c in cycles if c not in KNOWN_MODULE_CYCLES]
    lines = dict.fromkeys(f"{i.where}: {i.source} -> {i.target}" for c in new for i in imports
                          if i.source in c and i.target in c)
    assert not new, f"import cycles between modules {[sorted(c) for c in new]}:\n" + "\n".join(lines)
    stale = [sorted(c) for c in KNOWN_MODULE_CYCLES if c not in cycles]
    assert not stale, f"KNOWN_MODULE_CYCLES lists cycles that are gone (delete the entries): {stale}"


def test_the_checker_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    """The parser's own check: a relative import inside a function and an upward one are found and resolved."""
    src = ("def f():\n    from ..models.nb201 import NB201Network\n    return NB201Network\n"
           "if True:\n    from . import networks\n")
    mods = {"robustbench_nas.search_spaces.fake": (tmp_path / "fake.py", False),
            "robustbench_nas.search_spaces.networks": (tmp_path / "networks.py", False),
            "robustbench_nas.models.nb201": (tmp_path / "nb201.py", False)}
    (tmp_path / "fake.py").write_text(src)
    (tmp_path / "networks.py").write_text("")
    (tmp_path / "nb201.py").write_text("")
    found = _imports(mods, root=tmp_path)
    assert [(i.source, i.target, i.where) for i in found] == [
        ("robustbench_nas.search_spaces.fake", "robustbench_nas.models.nb201", "fake.py:2"),
        ("robustbench_nas.search_spaces.fake", "robustbench_nas.search_spaces.networks", "fake.py:5"),
    ]
    assert _layer(_package(found[0].target)) > _layer(_package(found[0].source))  # would be reported as upward
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]

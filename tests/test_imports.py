"""No module under chatd/ or client/ imports a module that imports it back.

An import circle works only by the order in which modules happen to load,
and it hides which of the two is the lower layer. The imports are read with
`ast`, not run: those at module level, inside functions and under
`if TYPE_CHECKING:` all count, because each is a dependency a reader has to
follow (and a lazy import is the usual way a circle is hidden).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("chatd", "client")

ImportGraph = dict[str, set[str]]


def module_files(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Every module of `packages` under `root` by dotted name; `pkg/__init__.py` is `pkg`."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _known_prefix(dotted: str, modules: Mapping[str, Path]) -> str | None:
    """The longest leading part of `dotted` that is one of our modules, if any."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _base_of(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The module a `from ... import` names, relative imports resolved against `importer`."""
    if node.level == 0:
        return node.module or ""
    package = importer.split(".")
    if not is_package:
        package = package[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, *([node.module] if node.module else [])])


def imports_of(name: str, path: Path, modules: Mapping[str, Path]) -> set[str]:
    """Our modules that the module `name` (at `path`) imports, anywhere in its code.

    `from a.b import c` is `a.b.c` when that is a module (or package), else `a.b`.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _base_of(node, name, is_package)
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            module = _known_prefix(target, modules)
            if module is not None:
                found.add(module)
    return found


def import_graph(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> ImportGraph:
    """Each module of ours and the modules of ours it imports."""
    modules = module_files(root, packages)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


@dataclass(frozen=True, slots=True)
class Circle:
    """Modules that reach one another by imports, and one chain that shows it.

    `chain` is a shortest one from the first module (by name) back to it,
    `[a, b, ..., a]`; `modules` may hold more, on other chains through these.
    """

    modules: frozenset[str]
    chain: tuple[str, ...]

    def __str__(self) -> str:
        shown = " -> ".join(self.chain)
        others = sorted(self.modules - set(self.chain))
        return shown + (f" (also in it: {', '.join(others)})" if others else "")


def circles(graph: Mapping[str, set[str]]) -> list[Circle]:
    """The import circles: strongly connected components (Tarjan) of more than one
    module, and modules that import themselves."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(start: str) -> None:
        # iterative, so that a deep import chain cannot hit the recursion limit
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.get(successor, ())))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    group = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.add(member)
                        if member == node:
                            break
                    if len(group) > 1 or node in graph.get(node, ()):
                        groups.append(group)

    for module in sorted(graph):
        if module not in index:
            visit(module)
    found = [Circle(frozenset(group), _chain(graph, group)) for group in groups]
    return sorted(found, key=lambda circle: circle.chain)


def _chain(graph: Mapping[str, set[str]], group: set[str]) -> tuple[str, ...]:
    """A shortest chain of imports within `group` from its first module back to it."""
    start = min(group)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph.get(node, set()) & group):
                if successor == start:
                    chain = [node]
                    while chain[-1] != start:
                        chain.append(came_from[chain[-1]])
                    return (*reversed(chain), start)
                if successor not in came_from:
                    came_from[successor] = node
                    following.append(successor)
        frontier = following
    raise AssertionError(f"no chain back to {start} in {sorted(group)}")


# -- the tree as it is ------------------------------------------------------------


def test_no_module_imports_itself_back() -> None:
    found = circles(import_graph())
    assert not found, "import circles:\n" + "\n".join(map(str, found))


# -- the checker itself: it sees every kind of import, so it can fail ---------------


def _tree(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def _chains(root: Path, *packages: str) -> list[tuple[str, ...]]:
    return [circle.chain for circle in circles(import_graph(root, packages))]


@pytest.mark.parametrize(
    ("back", "how"),
    [
        ("from pkg.low import thing\n", "at module level"),
        ("def later():\n    import pkg.low\n", "inside a function"),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import low\n",
            "for type checking only",
        ),
        ("from . import low\n", "relatively"),
    ],
)
def test_a_circle_is_found_however_it_is_imported(tmp_path: Path, back: str, how: str) -> None:
    root = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/low.py": "from pkg.high import Thing\n",
            "pkg/high.py": back,
            "pkg/apart.py": "import pkg.low\n",
        },
    )
    assert _chains(root, "pkg") == [("pkg.high", "pkg.low", "pkg.high")], how


def test_a_longer_circle_is_named_link_by_link(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg import b\n",
            "pkg/b.py": "from pkg.sub import c\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/c.py": "from pkg.sub.d import x\n",
            "pkg/sub/d.py": "import pkg.a\n",
            "other/__init__.py": "import pkg.a\n",
        },
    )
    assert _chains(root, "pkg", "other") == [("pkg.a", "pkg.b", "pkg.sub.c", "pkg.sub.d", "pkg.a")]


def test_a_package_init_is_the_package(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.parts import one\n",
            "pkg/parts/__init__.py": "from pkg.parts import one\n",
            "pkg/parts/one.py": "import pkg\n",
        },
    )
    assert _chains(root, "pkg") == [("pkg", "pkg.parts.one", "pkg")]


def test_one_way_imports_are_no_circle(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/low.py": "import os\nfrom pkg import __version__\n",
            "pkg/high.py": "from pkg.low import thing\nfrom pkg import low\n",
            "pkg/top.py": "from pkg import high, low\n",
        },
    )
    assert _chains(root, "pkg") == []


def test_a_circle_names_every_module_in_it(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "import pkg.b\n",
            "pkg/b.py": "import pkg.a\nimport pkg.c\n",
            "pkg/c.py": "import pkg.a\n",
        },
    )
    [circle] = circles(import_graph(root, ["pkg"]))
    assert circle.modules == {"pkg.a", "pkg.b", "pkg.c"}
    assert str(circle) == "pkg.a -> pkg.b -> pkg.a (also in it: pkg.c)"

"""The package's layers point down and its modules form no cycle (``docs/design.md``).

Every module of ``ufm`` and ``theory`` is parsed with :mod:`ast`, imports inside functions
included, relative imports resolved. The edge model is import-linter's: ``import a.b`` and
``from a.b import name`` are edges to the module ``a.b`` (its ``__init__`` for a package), and
``from a import b`` is an edge to ``a.b`` when ``b`` is a module, else to ``a``. So ``import ufm``
and ``from ufm import solve`` reach the facade ``ufm/__init__.py``, which imports everything.

Layers, bottom to top (a module may import its own layer and those below):

1. core: ``ufm.problems``, ``ufm.metrics``, the solvers, the loop, the exact solver, the
   certificate and the shared helpers (every ``ufm`` module not named below);
2. theory: ``theory.*``;
3. workflows: the sweep (``ufm._sweep``), the plots (``ufm.plot``) and the trainer
   (``ufm.train``, which moreover never imports ``theory``);
4. the facade: ``ufm`` (``ufm/__init__.py``);
5. the command line: ``ufm._cli``, the application on top of everything.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("ufm", "theory")
CORE, THEORY, WORKFLOWS, FACADE, CLI = 1, 2, 3, 4, 5
NAMES = {CORE: "core", THEORY: "theory", WORKFLOWS: "workflows", FACADE: "facade", CLI: "cli"}
WORKFLOW_PREFIXES = ("ufm._sweep", "ufm.plot", "ufm.train")
TRAINER = "ufm.train"


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer(module: str) -> int:
    if module == "ufm":
        return FACADE
    if _within(module, "theory"):
        return THEORY
    if _within(module, "ufm._cli"):
        return CLI
    if any(_within(module, p) for p in WORKFLOW_PREFIXES):
        return WORKFLOWS
    return CORE


def modules() -> dict[str, pathlib.Path]:
    """``{dotted name: path}`` of every module of the packages."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _resolve(module: str, path: pathlib.Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str, path: pathlib.Path, known) -> set[str]:
    """The internal modules that ``module`` imports (anywhere in its body)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                for k in range(len(parts), 0, -1):
                    if ".".join(parts[:k]) in known:
                        out.add(".".join(parts[:k]))
                        break
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path, node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in known:
                    out.add(sub)
                elif target in known:
                    out.add(target)
    out.discard(module)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(m, p, mods) for m, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    for root in g:
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(g[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_every_package_module_is_parsed():
    g = graph()
    assert {"ufm", "theory", "ufm.problems", "ufm.metrics", "ufm._sweep", "ufm._cli"} <= set(g)
    assert "theory._reference" in g["theory._regression_reference"]  # relative imports resolved
    assert "ufm" in g["ufm._cli._problems"]  # an import inside a function is an edge


def test_no_import_cycles():
    found = cycles(graph())
    assert not found, f"import cycles between modules: {found}"


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_layers_point_down():
    up = []
    for src, targets in graph().items():
        for dst in targets:
            if layer(dst) > layer(src):
                up.append(f"{src} ({NAMES[layer(src)]}) -> {dst} ({NAMES[layer(dst)]})")
    assert not up, "imports that point up a layer:\n" + "\n".join(sorted(up))


def test_theory_never_imports_the_facade_and_the_trainer_never_imports_theory():
    g = graph()
    for src, targets in g.items():
        if _within(src, "theory"):
            assert "ufm" not in targets, f"{src} imports the ufm facade; import core submodules"
        if _within(src, TRAINER):
            assert not any(_within(t, "theory") for t in targets), f"{src} imports theory"


def test_layer_of_known_modules():
    assert layer("ufm._solve") == CORE and layer("ufm.problems.regression") == CORE
    assert layer("theory._reference") == THEORY
    assert layer("ufm._sweep.api") == WORKFLOWS and layer("ufm.plot") == WORKFLOWS
    assert layer("ufm.train._fit") == WORKFLOWS
    assert layer("ufm") == FACADE and layer("ufm._cli.check") == CLI


FIRST_IMPORTS = [
    "import theory",
    "import theory.deep",
    "import ufm",
    "import ufm.metrics",
    "import ufm.problems",
    "import ufm._sweep",
    "import ufm._sweep.api",
    "import ufm._cli",
    "import ufm._cli.check",
]


@pytest.mark.slow
@pytest.mark.slow
@pytest.mark.parametrize("first", FIRST_IMPORTS)
def test_every_import_order_works_in_a_fresh_interpreter(first):
    code = (
        f"{first}\nimport ufm, theory\n"
        "assert callable(ufm.sweep) and callable(theory.compare) and callable(theory.reference)\n"
        "assert ufm.SweepTable and ufm.shard_samples and theory.deep.optimum\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr

"""The package reads as a pipeline: few top-level modules, no import cycles, and no lower layer importing a higher one.

The import graph is read with ``ast`` from every ``.py`` file of ``optical_lightning/``: absolute and relative
imports of ``optical_lightning.*``, at module level, inside functions and under ``TYPE_CHECKING`` alike.
The study (``optical_lightning_study/``: report, sweeps, significance, ceilings, drift, bench) sits on top:
it imports the library, the library never imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "optical_lightning"
STUDY = ROOT / "optical_lightning_study"

MAX_TOP_LEVEL_MODULES = 8

#: Lowest first. A module may import its own layer and the layers before it, never one after it.
#: (``training`` is the orchestrator: its pipeline evaluates and publishes, so it sits above evaluation and
#: reporting; ``data`` batches with the encoders' tokenizers and caches their outputs, so it sits above models.)
LAYERS = ("utils", "models", "losses", "data", "prepare", "evaluation", "search", "mcqa_score", "reporting",
          "training")
ROOT_LAYER = len(LAYERS)  # ``optical_lightning/__init__.py``: may import anything, nothing may import it


def module_files(package: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package ``__init__``)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def _owner(name: str, modules: dict[str, tuple[Path, bool]]) -> str | None:
    """The module of the package that ``name`` (a module, or an object inside one) lives in."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in its file)."""
    modules, top = module_files(package), package.name
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        here = name if is_package else name.rpartition(".")[0]
        targets: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets |= {_owner(a.name, modules) for a in node.names if a.name.split(".")[0] == top}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if source.split(".")[0] != top:
                    continue
                for alias in node.names:  # ``from pkg import submodule`` imports the submodule
                    sub = f"{source}.{alias.name}"
                    targets.add(sub if sub in modules else _owner(source, modules))
        graph[name] = {t for t in targets if t is not None and t != name}
    return graph


def imports_of(folder: Path, top: str) -> dict[str, set[str]]:
    """Module of ``folder`` -> the modules ``top`` or ``top.*`` that its absolute imports name (anywhere in its file).

    A ``from X import name`` counts as an import of ``X``, so a stale path (a module that moved) stays visible
    instead of resolving to its parent package as in :func:`import_graph`.
    """
    found: dict[str, set[str]] = {}
    for name, (path, _) in module_files(folder).items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.split(".")[0] == top}
            elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == top:
                targets.add(node.module)
        if targets:
            found[name] = targets
    return found


def missing_modules(folders: list[Path], package: Path) -> list[str]:
    """``module imports X`` for each import of ``package`` by the folders' files where X is no module of it."""
    modules = module_files(package)
    return [f"{src} imports {dst}" for folder in folders for src, dsts in sorted(imports_of(folder, package.name).items())
            for dst in sorted(dsts) if dst not in modules]


def layer_of(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return ROOT_LAYER
    if parts[1] not in LAYERS:
        raise AssertionError(f"{module}: {parts[1]!r} is in no layer; add it to LAYERS in {Path(__file__).name}")
    return LAYERS.index(parts[1])


def top_level_modules(package: Path) -> list[str]:
    return sorted(p.name for p in package.glob("*.py") if p.name != "__init__.py")


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    return [f"{src} ({LAYERS[layer_of(src)] if layer_of(src) < ROOT_LAYER else 'root'}) imports {dst} "
            f"({LAYERS[layer_of(dst)] if layer_of(dst) < ROOT_LAYER else 'root'})"
            for src in sorted(graph) for dst in sorted(graph[src]) if layer_of(dst) > layer_of(src)]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``), or None: a depth-first search for a back edge."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(PACKAGE)


def test_few_top_level_modules():
    modules = top_level_modules(PACKAGE)
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, f"{len(modules)} top-level modules: {modules}"


def test_the_graph_sees_every_kind_of_import(graph):
    """The graph is not vacuous: module-level, relative, ``TYPE_CHECKING`` and function-local imports are all edges."""
    assert "optical_lightning.utils.errors" in graph["optical_lightning.utils.precision"]  # module level
    assert "optical_lightning.prepare.cli" in graph["optical_lightning.prepare.__main__"]  # relative
    assert "optical_lightning.prepare.build_records" in graph["optical_lightning.prepare.manifest"]  # TYPE_CHECKING
    assert "optical_lightning.utils.precision" in graph["optical_lightning.utils.config"]  # inside a function


def test_no_two_modules_import_each_other(graph):
    pairs = sorted((a, b) for a in graph for b in graph[a] if a < b and a in graph.get(b, ()))
    assert not pairs, f"modules that import each other: {pairs}"


def test_no_import_cycles(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_lower_layer_imports_a_higher_one(graph):
    for module in graph:  # every subpackage and top-level module has its place in LAYERS
        layer_of(module)
    violations = layer_violations(graph)
    assert not violations, "\n".join(violations)


def test_the_checks_can_fail(tmp_path):
    """The old layout fails every check: a top-level helper per file, ``build`` <-> ``manifest``, ``models`` -> ``data``."""
    package = tmp_path / "optical_lightning"
    files = {
        "__init__.py": "from optical_lightning.errors import OpticalError\n",
        **{f"{name}.py": "" for name in ("atomic", "errors", "resources", "precision", "textfiles", "config",
                                          "languages", "optim", "launch")},
        "prepare/__init__.py": "",
        "prepare/build.py": "from optical_lightning.prepare.manifest import write_manifest\n",
        "prepare/manifest.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                "    from .build import BuildConfig\n"),
        "data/__init__.py": "",
        "data/bitext.py": "def f():\n    from optical_lightning.models import collate\n",
        "models/__init__.py": "",
        "models/collate.py": "from optical_lightning.data.bitext import BitextPair\n",
    }
    for rel, text in files.items():
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        (package / rel).write_text(text)
    old = import_graph(package)
    assert len(top_level_modules(package)) > MAX_TOP_LEVEL_MODULES
    assert "optical_lightning.prepare.manifest" in old["optical_lightning.prepare.build"]
    assert "optical_lightning.prepare.build" in old["optical_lightning.prepare.manifest"]
    assert find_cycle(old) is not None
    assert "optical_lightning.data.bitext" in old["optical_lightning.models.collate"]
    assert "optical_lightning.models.collate" in old["optical_lightning.data.bitext"]  # inside a function
    with pytest.raises(AssertionError, match="'errors' is in no layer"):  # a top-level helper
        layer_violations(old)
    in_subpackages = {m: deps for m, deps in old.items() if m.count(".") == 2}
    assert layer_violations(in_subpackages) == [
        "optical_lightning.models.collate (models) imports optical_lightning.data.bitext (data)"]


def test_the_library_never_imports_the_study():
    """``optical_lightning`` is what a user imports; the study's report, sweeps and benchmarks stay out of it."""
    assert imports_of(PACKAGE, STUDY.name) == {}


def test_the_study_imports_only_modules_of_the_library_and_has_no_cycles():
    study = import_graph(STUDY)
    assert "optical_lightning_study.bench.measure" in study["optical_lightning_study.bench.steps"]  # not vacuous
    assert "optical_lightning.reporting.plots" in imports_of(STUDY, PACKAGE.name)["optical_lightning_study.report"]
    assert find_cycle(study) is None, "import cycle: " + " -> ".join(find_cycle(study))
    assert not missing_modules([STUDY], PACKAGE), missing_modules([STUDY], PACKAGE)


def test_scripts_and_tests_import_the_modules_where_they_now_live():
    """experiments/*.py and the tests name existing modules of both packages (nothing left at an old path)."""
    folders = [ROOT / "experiments", ROOT / "tests", STUDY]
    problems = missing_modules(folders, PACKAGE) + missing_modules(folders, STUDY)
    assert not problems, "\n".join(problems)


def test_the_study_checks_can_fail(tmp_path):
    """A library module importing the study, and a study module importing a library path that moved, are both found."""
    library, study = tmp_path / "optical_lightning", tmp_path / "optical_lightning_study"
    files = {
        library / "__init__.py": "",
        library / "training" / "__init__.py": "",
        library / "training" / "callbacks.py": "def f():\n    from optical_lightning_study.report import render\n",
        library / "reporting" / "__init__.py": "",
        study / "__init__.py": "",
        study / "report.py": "from optical_lightning.reporting.sweeps import summarize\n",
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert imports_of(library, study.name) == {
        "optical_lightning.training.callbacks": {"optical_lightning_study.report"}}
    assert missing_modules([study], library) == [
        "optical_lightning_study.report imports optical_lightning.reporting.sweeps"]
    assert missing_modules([library], study) == []  # optical_lightning_study.report exists

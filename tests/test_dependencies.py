"""Every third-party package the code imports is declared in ``pyproject.toml``.

CI builds its environment from ``pyproject.toml`` alone (``.ci/run`` deletes ``.venv``), so an
undeclared import fails there; this test says which one, and where, before CI has to.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SCANNED = [ROOT / "optical_lightning", ROOT / "optical_lightning_study", ROOT / "run.py", ROOT / "experiments",
           ROOT / "tests"]
IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}


def canonical(name: str) -> str:
    """PEP 503 form of a distribution name: ``PyYAML`` and ``pyyaml`` are the same."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return canonical(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1))


def declared(pyproject: Path) -> dict[str, str]:
    """Declared distribution -> ``core`` or the name of the extra that declares it."""
    project = tomllib.loads(pyproject.read_text())["project"]
    where = {requirement_name(r): "core" for r in project["dependencies"]}
    for extra, requirements in project.get("optional-dependencies", {}).items():
        for r in requirements:
            where.setdefault(requirement_name(r), extra)
    return where


def python_files() -> list[Path]:
    return sorted(f for root in SCANNED for f in ([root] if root.is_file() else root.rglob("*.py")))


def local_modules() -> set[str]:
    """Names importable from the scanned folders themselves (``conftest``, sibling scripts)."""
    names = {"optical_lightning", "optical_lightning_study"}
    for root in SCANNED:
        if root.is_dir():
            # a test imports its siblings (pytest puts each test file's folder on sys.path)
            files = root.rglob("*.py") if root.name == "tests" else root.glob("*.py")
            names |= {p.stem for p in files} | {p.name for p in root.iterdir() if (p / "__init__.py").exists()}
    return names


def guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> ast.Try | None:
    """The ``try`` whose body holds ``node`` and whose handlers catch ImportError, if any."""
    child, parent = node, parents.get(node)
    while parent is not None:
        if isinstance(parent, ast.Try) and child in parent.body:
            caught = {n.id for h in parent.handlers for n in ast.walk(h.type) if isinstance(n, ast.Name)} if all(
                h.type is not None for h in parent.handlers) else IMPORT_ERRORS
            if caught & IMPORT_ERRORS:
                return parent
        child, parent = parent, parents.get(parent)
    return None


def third_party_imports(path: Path, local: set[str]) -> list[tuple[str, int, ast.Try | None]]:
    """``(top-level module, line, guarding try)`` of each import of a module outside stdlib and the project."""
    tree = ast.parse(path.read_text(), filename=str(path))
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        for module in modules:
            top = module.split(".")[0]
            # a script (not a package module) imports the scripts beside it: Python puts its folder on sys.path
            sibling = not (path.parent / "__init__.py").exists() and (path.parent / f"{top}.py").is_file()
            if top not in sys.stdlib_module_names and top not in local and not sibling:
                found.append((top, node.lineno, guarded(node, parents)))
    return found


def distribution_of(module: str, installed: dict[str, list[str]]) -> str:
    """The distribution that provides ``module``: from the environment, else the module's own name
    (an optional extra need not be installed for the check to know what it would be)."""
    names = installed.get(module)
    return canonical(names[0]) if names else canonical(module)


def undeclared_imports(pyproject: Path) -> list[str]:
    """One line per import that ``pyproject.toml`` does not cover, or covers only in an unguarded extra."""
    where, installed, local = declared(pyproject), packages_distributions(), local_modules()
    problems = []
    for path in python_files():
        rel = path.relative_to(ROOT)
        in_tests = rel.parts[0] == "tests"
        source = path.read_text()
        for module, line, guard in third_party_imports(path, local):
            dist = distribution_of(module, installed)
            extra = where.get(dist)
            if extra is None:
                problems.append(f"{rel}:{line} imports {module} (distribution {dist}), which pyproject.toml does not declare")
            elif extra != "core" and not (in_tests and extra == "dev") and guard is None:
                problems.append(f"{rel}:{line} imports {module} from the optional extra [{extra}] without a "
                                f"try/except ImportError guard")
            elif guard is not None and extra not in ("core", "dev"):
                raises = [ast.get_source_segment(source, n) or "" for h in guard.handlers for n in ast.walk(h)
                          if isinstance(n, ast.Raise)]
                if raises and not any(f"optical-lightning[{extra}]" in r for r in raises):
                    problems.append(f"{rel}:{line}: the ImportError for {module} should name the extra: "
                                    f"pip install 'optical-lightning[{extra}]'")
    return problems


def test_every_import_is_declared_in_pyproject():
    problems = undeclared_imports(ROOT / "pyproject.toml")
    assert not problems, "\n".join(problems)


def test_an_undeclared_import_is_found(tmp_path):
    """The check itself can fail: pyproject.toml without matplotlib (imported by the plots) is caught."""
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^\s*"matplotlib[^"]*",.*$', text, flags=re.M)
    stripped = tmp_path / "pyproject.toml"
    stripped.write_text(re.sub(r'^\s*"matplotlib[^"]*",.*\n', "", text, flags=re.M))
    problems = undeclared_imports(stripped)
    assert problems and all("matplotlib" in p for p in problems), problems
    assert any(p.startswith("optical_lightning/reporting/plots.py:") for p in problems), problems
    assert any(p.startswith("optical_lightning_study/sweeps.py:") for p in problems), problems  # the study too


@pytest.mark.parametrize("module", ["faiss", "datasets"])
def test_optional_imports_are_guarded_and_name_their_extra(module):
    """The extras-only imports (FAISS search, hub datasets) sit behind an ImportError that names the extra."""
    local = local_modules()
    sites = [(path, guard) for path in python_files() if path.relative_to(ROOT).parts[0] != "tests"
             for top, _, guard in third_party_imports(path, local) if top == module]
    assert sites, f"no import of {module} found"
    assert all(guard is not None for _, guard in sites), sites

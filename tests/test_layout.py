"""The house: sdbatch's modules import one way along the walk, and never in a circle.

The walk is cli -> job -> plan -> run -> backends -> output -> pictures. A stage reads the data
of the stages before it (plan reads a Job, the writer an Outcome), so it may import them; it
never imports a stage after it, which would let it reach into work not yet done. Two modules
conduct the stages rather than being one: cli (which may use every stage) and run (which drives
the backends, the writer and the pictures). The stand-in servers are not a stage: they import
no part of sdbatch and no stage imports them, except cli, which starts one for `sdbatch mock`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sdbatch

PACKAGE = Path(sdbatch.__file__).resolve().parent
STAGES = ["cli", "job", "plan", "run", "backends", "output", "pictures"]
# Shared by every stage: the one error hierarchy and exit codes, the version.
COMMON = {"sdbatch", "sdbatch.errors"}
CONDUCTORS = {"cli", "run"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Every sdbatch module `path` imports, at the top, in a function or for type checking.
    `from sdbatch.job import schema` imports the module sdbatch.job.schema, not the package's
    own `__init__` (which Python initialises first in any case)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in modules else node.module)
    return found & modules


def graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    paths = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(paths)
    return {name: imports_of(path, modules) - {name} for name, path in paths.items()}


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    if module in COMMON:
        return None
    return "cli" if parts[1] == "__main__" else parts[1]  # `python -m sdbatch` is the cli


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the list of modules around it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def wrong_way(edges: dict[str, set[str]]) -> list[str]:
    """Every import that goes against the walk, in words."""
    problems = []
    for module, targets in sorted(edges.items()):
        here = stage_of(module)
        for target in sorted(targets):
            there = stage_of(target)
            if here is None:
                if there is not None:
                    problems.append(f"{module} (shared by all stages) imports {target}")
            elif there is None or there == here:
                continue  # a stage using the shared errors, or itself
            elif "standin" in (here, there):
                if here != "cli":
                    problems.append(f"{module} imports {target}: the stand-in is apart")
            elif there in CONDUCTORS and here != "cli":
                problems.append(f"{module} ({here}) imports {target}: nothing calls back up")
            elif STAGES.index(there) > STAGES.index(here) and here not in CONDUCTORS:
                problems.append(f"{module} ({here}) imports {target}, of the later {there}")
    return problems


def test_sdbatch_imports_in_no_circle() -> None:
    assert cycle(graph()) is None


def test_no_stage_imports_a_later_one() -> None:
    assert wrong_way(graph()) == []


def test_backend_kinds_stay_behind_the_seam() -> None:
    """Only the cli and the registry pick a backend; everything else knows backends.base."""
    for module, targets in graph().items():
        if module.startswith(("sdbatch.backends.", "sdbatch.cli")):
            continue
        assert not {t for t in targets if t.startswith("sdbatch.backends.a1111")}, module


def test_top_level_holds_only_the_entry_and_the_shared() -> None:
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == [
        "__init__.py",
        "__main__.py",
        "cli.py",
        "errors.py",
    ]
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} >= {
        *STAGES[1:],
        "standin",
    }


# The checks themselves, on small made-up packages: each must catch what it is for.
def write_package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "sdbatch"
    for name, text in files.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return pkg


def test_a_circle_is_found(tmp_path: Path) -> None:
    pkg = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "job/__init__.py": "",
            "job/a.py": "from sdbatch.job.b import x\n",
            "job/b.py": "def f() -> None:\n    from sdbatch.job import a\n",
        },
    )
    found = cycle(graph(pkg))
    assert found is not None and set(found) == {"sdbatch.job.a", "sdbatch.job.b"}


@pytest.mark.parametrize(
    ("module", "text", "words"),
    [
        ("job/loader.py", "from sdbatch.plan.expand import Plan\n", "of the later plan"),
        ("output/writer.py", "import sdbatch.pictures.sheet\n", "of the later pictures"),
        ("backends/base.py", "from sdbatch.output import writer\n", "of the later output"),
        ("pictures/sheet.py", "from sdbatch.run.runner import run_job\n", "calls back up"),
        ("plan/expand.py", "from sdbatch.standin.a1111 import MockWebui\n", "apart"),
        ("errors.py", "from sdbatch.job.loader import Job\n", "shared by all stages"),
    ],
)
def test_a_wrong_way_import_is_found(tmp_path: Path, module: str, text: str, words: str) -> None:
    files = {
        "__init__.py": "",
        "errors.py": "",
        "job/loader.py": "",
        "plan/expand.py": "from sdbatch.job.loader import Job\n",  # backwards: fine
        "run/runner.py": "from sdbatch.output.writer import Writer\n",  # a conductor: fine
        "output/writer.py": "",
        "pictures/sheet.py": "",
        "backends/base.py": "",
        "standin/a1111/__init__.py": "",
        "run/__init__.py": "",
    }
    assert wrong_way(graph(write_package(tmp_path, files))) == []
    files[module] = files[module] + text
    problems = wrong_way(graph(write_package(tmp_path, files)))
    assert len(problems) == 1 and words in problems[0], problems

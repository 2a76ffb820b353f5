"""Code versions: hashes of the package's own source that key stage markers, the stage store shared by runs, the
evaluation cache and the feature caches, so a fix to a metric or a stage is never hidden behind results the old code
produced, and a change to (say) a figure retrains nothing.

A key covers the code a stage **actually imports**, found from the import graph, not from a hand-kept list: every
`import` / `from … import` statement of the package (module level and inside functions, read from the source with
`ast`) from the stage's entry modules (`ENTRIES`), followed transitively. `from ..a.b import x` counts `a/b.py` (and
`a/b/x.py` when x is a submodule); `from .. import a` counts `a/__init__.py`. The implicit import of a parent package's
`__init__.py` is not counted: those files only re-export (`tests/test_house.py` checks they hold nothing else).

What a key leaves out, each for a reason (`EXCLUDED`; the walk does not go through them): modules that only report
(figures, tables, summaries, progress lines, file writing and provenance stamps) and the params schema, whose whole
effect reaches a stage through the parameter values its key already hashes. Files a stage loads without importing
them (the `evaluate` metric scripts, the benchmark modules found by name) are named in `LOADED`.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the package: hetfb_utils/
PACKAGE = ROOT.name

# the modules a stage's work starts from (what the runner, the launcher and the notebooks call)
ENTRIES = {
    "data": ("data/union.py", "data/eval_sets.py"),  # stage 1: the union; the evaluation sets' files
    "selection": ("selection/subsets.py", "selection/embeddings.py"),  # stage 2
    "training": ("training/sft.py", "training/reward.py", "training/rl.py"),  # stages 3-4 (and their launches)
    "evaluation": ("evaluation/evaluate.py",),  # stage 5
    "features": ("training/reward_rule.py", "models/loading.py"),  # the reward model's frozen features
}
# loaded by file or by name, not by an import statement the graph can see
LOADED = {
    "evaluation": ("evaluation/benchmarks", "evaluation/metrics"),
}
# left out of every key, with why
EXCLUDED = {
    "common/params.py": "the params schema: its effect reaches a stage through the parameter values its key hashes",
    "common/sections.py": "the params schema's sections (as common/params.py)",
    "common/stage_sections.py": "the params schema's training sections (as common/params.py)",
    "common/params_files.py": "reads params files and `extends:`; the values it gives are hashed",
    "common/params_doc.py": "writes docs/params.md",
    "common/errors.py": "exception classes and their messages: an error, never a number a stage keeps",
    "common/report.py": "writes files (atomically), tables and the provenance stamp of outputs",
    "common/progress.py": "console progress lines",
    "data/figures.py": "figures of notebook 01 (drawn from stage outputs, never read by a stage)",
    "data/audit.py": "the shortcut audit: a table of notebook 01, no stage's input",
    "selection/figures.py": "figures of notebook 02 (drawn from stage outputs, never read by a stage)",
    "selection/signal.py": "the label audit: a table of notebook 01, no stage's input",
    "training/summary.py": "the training tables and curves of notebook 04",
    "evaluation/tables.py": "the evaluation's tables",
    "evaluation/figures.py": "figures of notebook 05 (drawn from results, never read by a stage)",
}


def _module_file(parts: list[str]) -> Path | None:
    """The file of a package module given by its path parts below the package (None outside it)."""
    base = ROOT.joinpath(*parts) if parts else ROOT
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _targets(node: ast.AST, here: Path) -> list[Path]:
    """The package files one import statement in `here` names."""
    pkg = list(here.relative_to(ROOT).parent.parts)
    out: list[Path] = []
    if isinstance(node, ast.Import):
        for a in node.names:
            if a.name.split(".")[0] == PACKAGE:
                out.append(_module_file(a.name.split(".")[1:]))
        return [p for p in out if p]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = pkg[: len(pkg) - node.level + 1] if node.level > 1 else pkg
    elif node.module and node.module.split(".")[0] == PACKAGE:
        base = []
    else:
        return []
    mod = (node.module or "").split(".") if node.module else []
    if not node.level:
        mod = mod[1:]
    for a in node.names:
        sub = _module_file(base + mod + [a.name])  # `from pkg import submodule`
        out.append(sub if sub is not None and a.name != "*" else _module_file(base + mod))
    return [p for p in out if p]


@functools.cache
def imports_of(path: Path) -> frozenset[Path]:
    """Every package file `path` imports, anywhere in it (module level and inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return frozenset(t for node in ast.walk(tree) for t in _targets(node, path))


def _expand(names: Iterable[str]) -> list[Path]:
    out = []
    for name in names:
        p = ROOT / name
        out += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return out


def reach(entries: Iterable[str], excluded: Iterable[str] = EXCLUDED) -> list[Path]:
    """The package files the `entries` (paths below the package) import, transitively, not walking through
    `excluded`."""
    skip = {ROOT / e for e in excluded}
    seen: set[Path] = set()
    todo = [p for p in _expand(entries) if p not in skip]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        todo += [t for t in imports_of(f) if t not in seen and t not in skip]
    return sorted(seen)


def files(group: str | None = None) -> list[Path]:
    """The files a group's key covers: the reach of its entries and the files it loads (every module for None)."""
    if group is None:
        return sorted(ROOT.rglob("*.py"))
    loaded = _expand(LOADED.get(group, ()))
    extra = [f for f in loaded if f.suffix == ".py"] + [f for n in LOADED.get(group, ()) for f in _data_files(n)]
    return sorted(set(reach(ENTRIES[group]) + reach([str(f.relative_to(ROOT)) for f in loaded]) + extra))


def _data_files(name: str) -> list[Path]:
    """Non-Python files a loaded folder holds (an `evaluate` metric's card)."""
    p = ROOT / name
    return sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in (".md",)) if p.is_dir() else []


def hash_files(paths: Iterable[Path]) -> str:
    """A 12-hex hash of files' names (below the package) and contents."""
    h = hashlib.sha256()
    for f in sorted(paths):
        if f.is_file():
            h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


@functools.cache
def code_version(group: str | None = None) -> str:
    """A 12-hex hash of the package's code: every module, or the files a group's key covers (`files`)."""
    return hash_files(files(group))


def module_version(*entries: str, excluded: Iterable[str] = ()) -> str:
    """A hash of what `entries` import, transitively (nothing excluded unless asked): a notebook's own reach."""
    return hash_files(reach(entries, excluded))


def notebook_version(notebook: Path) -> str:
    """A hash of what a notebook's code cells import from the package, transitively, nothing excluded (its tables
    and figures come from the report modules too): the code part of the runner's marker for that notebook."""
    import json

    cells = json.loads(Path(notebook).read_text()).get("cells", [])
    entries: set[Path] = set()
    for c in cells:
        if c.get("cell_type") != "code":
            continue
        src = "".join(c.get("source", []))
        try:
            tree = ast.parse(src)
        except SyntaxError:  # a cell with IPython magics: its plain import lines are still read
            tree = ast.parse("\n".join(x for x in src.splitlines() if x.lstrip().startswith(("import ", "from "))))
        for node in ast.walk(tree):
            entries.update(_targets(node, ROOT / "__main__.py"))
    return hash_files(reach([str(e.relative_to(ROOT)) for e in entries], excluded=()))


def stage_code_version(*groups: str) -> str:
    """One version for the code several groups make up."""
    return hashlib.sha256("|".join(code_version(g) for g in groups).encode()).hexdigest()[:12]

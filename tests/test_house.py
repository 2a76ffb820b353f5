"""The package's layout (no import cycle, modules that import alone, none over ~400 lines) and the
defects found by feeding the kit a new user's mistakes."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hetfb_utils.common.params import ParamsError, SourceSpec, load_params
from hetfb_utils.data import converters, readers

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "hetfb_utils"
# the folders in pipeline order: a folder may import its own and earlier ones, never a later one
LAYERS = ["common", "data", "selection", "models", "training", "evaluation", "analysis", "pipeline"]


def _name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = {_name(p): p for p in sorted(PKG.rglob("*.py")) if "metrics" not in p.parts}
MODULES = sorted(FILES)


def import_graph() -> dict[str, set[str]]:
    """Module -> the kit's modules it imports (module level and inside functions; relative or absolute)."""
    graph = {}
    for mod, path in FILES.items():
        package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[: len(package) - node.level + 1]
                targets = [
                    ".".join(base + (node.module.split(".") if node.module else []) + [a.name]) for a in node.names
                ]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hetfb_utils"):
                targets = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("hetfb_utils")]
            for t in targets:  # the longest prefix that is a module: `from .x import name` -> x
                parts = t.split(".")
                while parts and ".".join(parts) not in FILES:
                    parts.pop()
                if parts:
                    deps.add(".".join(parts))
        graph[mod] = {d for d in deps if d != mod}
    return graph


def _layer(mod: str) -> int | None:
    parts = mod.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_no_import_cycles_and_lower_stages_never_import_higher_ones():
    graph = import_graph()
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for d in graph[m]:
            if state.get(d) == 1 and not (d.count(".") == 1 and m.startswith(d + ".")):
                pytest.fail(f"import cycle: {' -> '.join(path + [m, d])}")
            if d not in state:
                visit(d, path + [m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])
    upward = [
        (m, d)
        for m, deps in graph.items()
        for d in deps
        if _layer(m) is not None and _layer(d) is not None and _layer(d) > _layer(m)
    ]
    assert not upward, f"a lower stage imports a higher one: {upward}"
    assert set(graph["hetfb_utils.models.scoring"]) == set(), "the scoring engine imports no stage"
    assert set(LAYERS) == {p.name for p in PKG.iterdir() if (p / "__init__.py").is_file()}


def test_every_subpackage_names_its_public_functions():
    import importlib

    for layer in LAYERS:
        mod = importlib.import_module(f"hetfb_utils.{layer}")
        assert mod.__doc__ and mod.__all__, layer
        missing = [n for n in mod.__all__ if not hasattr(mod, n)]
        assert not missing, (layer, missing)
    import hetfb_utils

    assert all(f"`{layer}/`" in hetfb_utils.__doc__ for layer in LAYERS)


def test_every_module_imports_alone_and_is_small():
    code = (
        "import importlib, sys\n"
        f"for m in {MODULES!r}:\n"
        "    for k in [k for k in sys.modules if k.startswith('hetfb_utils')]: del sys.modules[k]\n"
        "    importlib.import_module(m)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    big = {m: n for m, p in FILES.items() if (n := len(p.read_text().splitlines())) > 420}
    assert not big, f"modules over ~400 lines: {big}"


# ----------------------------------------------------------------------------- hostile inputs
def test_numeric_source_with_the_same_reply_scored_twice_is_dropped(tmp_path):
    drops = readers.Drops()
    spec = SourceSpec(name="mine", type="numeric", path=str(tmp_path / "x.csv"), label="score")
    rows = [
        {"prompt": "Q1", "response": "same", "score": 0.9},
        {"prompt": "Q1", "response": "same", "score": 0.1},
        {"prompt": "Q2", "response": "good", "score": 0.9},
        {"prompt": "Q2", "response": "bad", "score": 0.1},
    ]
    out = converters.parse_numeric(rows, spec, drops)
    assert [r["prompt"] for r in out] == ["Q2"]
    assert drops.counts[("mine", "identical_pair")] == 1


@pytest.mark.parametrize("name,content", [("empty.csv", b""), ("empty.jsonl", b""), ("blank.jsonl", b"\n\n")])
def test_empty_files_are_one_clear_error(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(readers.DataError, match=rf"{name} is empty: expected .*Fill it, or remove the source"):
        readers.read_table(str(p))


@pytest.mark.parametrize(
    "name,content",
    [
        ("latin.csv", "prompt,response,score\ncafé,olé,1\n"),
        ("latin.jsonl", '{"prompt": "café", "response": "olé", "score": 1}\n'),
    ],
)
def test_files_in_another_encoding_are_one_clear_error(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content.encode("latin-1"))
    with pytest.raises(readers.DataError, match=rf"{name} is not UTF-8 text .*iconv -f latin1 -t utf-8"):
        readers.read_table(str(p))


def test_yaml_syntax_error_names_the_file(tmp_path):
    p = tmp_path / "mix.yaml"
    p.write_text("run_name: mix\ndata:\n  sources: [\n    - name: x\n")
    with pytest.raises(ParamsError) as e:
        load_params(p)
    assert str(p) in str(e.value) and "line 4" in str(e.value) and "<unicode string>" not in str(e.value)


@pytest.mark.parametrize("bad", ["../../somewhere", "a/b", "..", "/abs", ".hidden"])
def test_run_name_must_be_a_plain_name(tiny_overrides, bad):
    with pytest.raises(ParamsError, match="run_name must be a plain name"):
        load_params("tiny", tiny_overrides + [f"run_name={bad}"])


def test_cli_refuses_a_run_name_that_escapes_and_writes_nothing(tmp_path, capsys):
    from hetfb_utils.__main__ import main

    before = set(tmp_path.rglob("*"))
    assert main(["run", "params/tiny.yaml", "-p", f"output_root={tmp_path}", "-p", "run_name=../x"]) == 2
    assert "run_name must be a plain name" in capsys.readouterr().err
    assert set(tmp_path.rglob("*")) == before and not (tmp_path.parent / "x").exists()


def test_outputs_keep_the_umask_mode(tmp_path, tiny):
    import pandas as pd

    from hetfb_utils.common.report import atomic_write_json, save_table

    old = os.umask(0o022)
    try:
        p = atomic_write_json({"a": 1}, tmp_path / "m.json")
        assert p.stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        assert atomic_write_json({"a": 1}, tmp_path / "private.json").stat().st_mode & 0o777 == 0o600
        os.umask(0o022)
        save_table(pd.DataFrame({"x": [1]}), "t", tiny)
        assert all(f.stat().st_mode & 0o777 == 0o644 for f in (tiny.run_dir / "tables").iterdir())
    finally:
        os.umask(old)


def test_caches_and_markers_are_keyed_by_the_code(tiny, monkeypatch):
    """A new code version re-evaluates every model and re-runs every notebook, and the runner says why (which files
    a version covers is the import graph's business: the tests below)."""
    from hetfb_utils import evaluation
    from hetfb_utils.common import version
    from hetfb_utils.pipeline import runner

    spec = evaluation.run_models(tiny)[0]
    stage = runner.STAGES[-1]
    fp, parts = evaluation.model_fingerprint(tiny, spec), runner._stage_parts(tiny, stage, None)
    marker = tiny.run_dir / "m.json"
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"key": runner._stage_key(parts), "parts": parts}))
    monkeypatch.setattr(version, "code_version", lambda *group: "another")
    monkeypatch.setattr(version, "module_version", lambda *a, **k: "another")
    new_parts = runner._stage_parts(tiny, stage, None)
    assert evaluation.model_fingerprint(tiny, spec) != fp and runner._stage_key(new_parts) != runner._stage_key(parts)
    assert runner._why(marker, new_parts, False) == "hetfb_utils code changed"
    assert runner._why(tiny.run_dir / "none.json", new_parts, False) == "not run yet"


def _reach(entries: list[str], graph: dict[str, set[str]], excluded: set[str]) -> set[str]:
    """The test's own closure of the import graph (`import_graph`, written independently of the kit's)."""
    seen, todo = set(), [e for e in entries if e not in excluded]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += [d for d in graph.get(m, ()) if d not in seen and d not in excluded]
    return seen


@pytest.mark.parametrize("group", ["data", "selection", "training", "evaluation", "features"])
def test_every_module_a_stage_imports_is_in_its_key(group):
    """Every package module reachable from a stage's entry modules (imports at module level and inside functions,
    transitively), less the named report-only exclusions, is hashed into the stage's key. The hand-kept list this
    replaced missed the reward head, the RL judge, the held-out pool and the precision choice."""
    from hetfb_utils.common import version

    graph = import_graph()
    name = {str(FILES[m].relative_to(PKG)): m for m in FILES}
    excluded = {name[e] for e in version.EXCLUDED}
    entries = [name[e] for e in version.ENTRIES[group]]
    keyed = {_name(f) for f in version.files(group) if f.suffix == ".py"}
    missing = _reach(entries, graph, excluded) - keyed
    assert not missing, f"{group}: modules its entry points import are outside its key: {sorted(missing)}"
    assert name["training/reward_head.py"] in keyed or group not in ("training", "evaluation")
    for why in version.EXCLUDED.values():
        assert len(why) > 20  # every exception says why


def test_package_inits_only_re_export():
    """The import graph does not count a parent package's `__init__` (Python runs it, but it only re-exports): checked
    here, so that skipping them can never hide code that runs. (`evaluation/benchmarks/__init__.py` holds helpers the
    benchmark modules import by name, and imports them all; the evaluation's key covers that whole folder.)"""
    for init in PKG.rglob("__init__.py"):
        if "metrics" in init.parts or init.parent.name == "benchmarks":
            continue
        for node in ast.parse(init.read_text()).body:
            ok = isinstance(node, (ast.Import, ast.ImportFrom)) or (
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            )
            ok = ok or (isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["__all__"])
            assert ok, f"{init}: line {node.lineno} does more than re-export"


TOY = """
from pathlib import Path

from ..registry import Benchmark, max_items, register

FILE = Path(__file__).resolve().parent.parent.parent.parent / "toy_data" / "toy.txt"
CALLS = FILE.with_name("calls.txt")


def load(params):
    lines = [x for x in FILE.read_text().splitlines() if x.strip()]
    n = max_items("toy", params)
    return lines[:n] if n else lines


def score(model, tok, items, params):
    with open(CALLS, "a") as f:
        f.write("scored\\n")
    values = [float(len(x)) for x in items]
    return {"mean_length": sum(values) / len(values), "items": {"id": list(items), "length": values}}


register(
    Benchmark(
        "toy",
        load,
        score,
        title="Toy benchmark: line lengths",
        table="toy_lengths",
        columns=(("length", "length", None),),
        files=lambda params: [str(FILE)],
        order=99,
    )
)
"""


def test_a_benchmark_is_one_file(tmp_path):
    """In a copy of the kit, one new module in `evaluation/benchmarks/` with its own data file, and no other edit: the
    evaluation scores it, caches it, scores it again when its file changes (the runner's input keys change too), and
    RESULTS.md reports it under its title."""
    import shutil

    dst = tmp_path / "kit"
    shutil.copytree(PKG, dst / "hetfb_utils", ignore=shutil.ignore_patterns("__pycache__"))
    (dst / "hetfb_utils/evaluation/benchmarks/toy.py").write_text(TOY)
    (dst / "toy_data").mkdir()
    (dst / "toy_data/toy.txt").write_text("red\nblue sky\ngreen grass grows\n")
    script = f"""
import json, sys
from pathlib import Path
from hetfb_utils.common import load_params
from hetfb_utils import evaluation
from hetfb_utils.evaluation.registry import eval_files
from hetfb_utils.analysis import uncertainty
from hetfb_utils.analysis.results import run_section
from hetfb_utils.analysis.runs import load_run
from hetfb_utils.common.report import atomic_write_json

p = load_params("{REPO / "params/tiny.yaml"}", ["output_root={tmp_path / "out"}", "cache_dir={tmp_path / "cache"}",
    "evaluation.max_items.toy=2"])
spec = evaluation.run_models(p)[0]
cache = evaluation.ResultCache(p)
res = [evaluation.evaluate_model(p, spec, None, cache, metrics=["toy", "winobias"]) for _ in range(2)]
files = eval_files(p)
if sys.argv[1] == "report":
    atomic_write_json({{"params": p.model_dump(mode="json")}}, p.run_dir / "manifest.json")
    atomic_write_json(res[:1], p.run_dir / "eval" / "results.json")
    uncertainty.save_interval_tables(res[:1], p)
    print("SECTION", run_section(load_run(p.run_dir)))
print("RESULT", json.dumps([res[0]["toy"]["mean_length"], [k for k in files if "toy" in k], list(files.values())]))
"""
    env = {**os.environ, "PYTHONPATH": str(dst)}

    def run(mode: str) -> str:
        out = subprocess.run([sys.executable, "-c", script, mode], cwd=dst, capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout

    first = run("score")
    value, toy_files, hashes = json.loads(first.split("RESULT ")[1])
    assert value == (3 + 8) / 2 and toy_files  # two items (`evaluation.max_items.toy`), scored
    assert (dst / "toy_data/calls.txt").read_text().count("scored") == 1  # the second call read the cache
    (dst / "toy_data/toy.txt").write_text("red\nblue\n")  # an edit to its file
    second = run("report")
    value2, _, hashes2 = json.loads(second.split("RESULT ")[1])
    assert value2 == 3.5 and hashes2 != hashes  # scored again; the runner's input key for notebook 05 changed
    assert (dst / "toy_data/calls.txt").read_text().count("scored") == 2
    assert "### Toy benchmark: line lengths" in second.split("SECTION ")[1]


def test_an_edit_in_a_stages_reach_changes_its_key_and_one_outside_does_not(tmp_path):
    """In a copy of the package: appending a comment to a module the training stage reaches only through a
    function-level import changes `code_version("training")`; the same edit to a report module does not."""
    import shutil

    src = PKG.parent
    dst = tmp_path / "repo"
    shutil.copytree(src / "hetfb_utils", dst / "hetfb_utils", ignore=shutil.ignore_patterns("__pycache__"))
    probe = "from hetfb_utils.common.version import code_version as v; print(v('training'), v('evaluation'))"

    def keys() -> list[str]:
        out = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=dst,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(dst)},
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    before = keys()
    with open(dst / "hetfb_utils/analysis/claims.py", "a") as f:
        f.write("# an edit outside every stage\n")
    assert keys() == before
    with open(dst / "hetfb_utils/training/reward_judge.py", "a") as f:  # imported inside `finish_reward` only
        f.write("# an edit inside the training stage's reach\n")
    after = keys()
    assert after[0] != before[0] and after[1] != before[1]


# ----------------------------------------------------------------------------- the benchmark registry
def test_a_toy_benchmark_registered_in_a_test_appears_in_the_tables(tiny_built):
    """A benchmark is one module: it declares its items, its scoring and its table, and the evaluation, the plain
    tables, the intervals and the recipe-level comparisons pick it up (no other module edited)."""
    from hetfb_utils import evaluation
    from hetfb_utils.analysis import uncertainty
    from hetfb_utils.evaluation.registry import Benchmark, item_tables, register, unregister
    from hetfb_utils.models.scoring import score_continuations

    p = tiny_built[0]

    def score(model, tok, items, params):  # the model's log-probability of " yes" after each question
        lp = score_continuations(model, tok, [(q, " yes") for q in items], 4)
        return {"mean_logprob": float(lp.mean()), "items": {"id": list(items), "logprob": lp.tolist()}}

    register(
        Benchmark(
            "toy",
            load=lambda params: [f"Is {w} a colour?" for w in ("red", "blue", "seven", "chair", "green", "nine")],
            score=score,
            title="toy: log p(yes)",
            table="toy_yes",
            columns=(("log p(yes)", "logprob", None),),
        )
    )
    try:
        assert "toy_yes" in item_tables()
        spec = evaluation.run_models(p)[0]
        res = evaluation.evaluate_model(p, spec, None, evaluation.ResultCache(p), metrics=["toy", "winobias"])
        assert res["toy"]["mean_logprob"] < 0 and len(res["toy"]["items"]["logprob"]) == 6
        assert list(evaluation.other_tables([res])["toy_yes"].columns) == ["model", "mean_logprob"]
        ci = uncertainty.interval_tables([res], p)["toy_yes"]
        assert ci.iloc[0]["metric"] == "log p(yes)" and ci.iloc[0]["lo"] <= ci.iloc[0]["value"] <= ci.iloc[0]["hi"]
    finally:
        unregister("toy")
    assert "toy_yes" not in item_tables()


# ----------------------------------------------------------------------------- the repository stands alone
def test_every_reference_in_code_docs_and_notebooks_resolves():
    """Links in Markdown and notebooks, and repository paths named in code and docs (`docs/…`, `params/…`,
    `hetfb_utils/…`, `tests/…`, `tools/…`, `notebooks/…`) point at files that exist; nothing points at the
    steering documents outside the repository (PAPER.md, DESIGN.md, SOURCES.md)."""
    import re

    root = PKG.parent
    texts = {p: p.read_text() for p in [*root.glob("*.md"), *(root / "docs").glob("*.md")]}
    texts.update({p: p.read_text() for p in (root / "notebooks").glob("*.ipynb")})
    texts.update(
        {p: p.read_text() for p in [*PKG.rglob("*.py"), *PKG.rglob("*.md"), *(root / "params").glob("*.yaml")]}
    )
    bad = []
    for path, text in texts.items():
        for name in ("PAPER.md", "DESIGN.md", "SOURCES.md"):
            if name in text:
                bad.append(f"{path.relative_to(root)} names {name}, which is not in the repository")
        links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text) if path.suffix in (".md", ".ipynb") else []
        for link in links:  # Markdown links
            if not link.startswith(("http://", "https://", "mailto:")):
                base = path.parent if path.suffix in (".md", ".ipynb") else root
                if not (base / link).exists() and not (root / link).exists():
                    bad.append(f"{path.relative_to(root)} links {link}")
        for ref in re.findall(r"(?<![\w/.])((?:docs|params|hetfb_utils|tests|tools|notebooks)/[\w./-]+\.\w+)", text):
            ref = ref.rstrip(".")
            if not (root / ref).exists():
                bad.append(f"{path.relative_to(root)} names {ref}")
    assert not bad, "\n".join(sorted(set(bad)))


def test_metric_cards_load_as_written():
    """The `evaluate.load(...)` line of each metric's card loads the metric from the repository."""
    import re

    import evaluate

    root = PKG.parent
    for card in (PKG / "evaluation" / "metrics").glob("*/README.md"):
        calls = re.findall(r"evaluate\.load\(\"([^\"]+)\"", card.read_text())
        assert calls, card
        for path in calls:
            assert (root / path).is_dir(), (card, path)
            assert evaluate.load(str(root / path)) is not None


def test_results_md_was_generated_from_a_clean_tree_by_code_in_this_history():
    """RESULTS.md is generated (`make results`), never edited: its header names a clean tree, every commit it names
    is in this repository's history, no run it quotes was made from uncommitted code, and it holds no machine's
    absolute path. A run made in a tree whose edits were outside the package (`+dirty`) passes only when its code hash
    is the package's hash at the commit its stamp names, recomputed here from that commit's files."""
    import re
    import subprocess

    root = PKG.parent
    text = (root / "RESULTS.md").read_text()
    assert "Generated by `python -m hetfb_utils results`" in text and "(clean tree)" in text.split("\n\n")[1]
    assert not re.search(r"`/(work|home|root|tmp)/", text), "absolute paths: regenerate with this version"
    stamps = re.findall(r"git ([0-9a-f]{7,40})(\+dirty)? \(code ([0-9a-f]{12}|\?): ([^)]*)\)", text)
    assert stamps, "RESULTS.md quotes no run stamp"
    for _, dirty, _code, said in stamps:
        assert not dirty or "the same code as HEAD" in said or said == "the code at HEAD", (
            f"a run made from uncommitted code ({said}): regenerate it from a clean tree"
        )
    if not (root / ".git").exists():
        return
    for sha in set(re.findall(r"git ([0-9a-f]{7,40})\b", text)):
        known = subprocess.run(["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=root, capture_output=True)
        assert known.returncode == 0, f"RESULTS.md names commit {sha}, which is not in this repository"
    for sha, dirty, code, said in stamps:
        if dirty:
            at = said.split("the same code as HEAD ")[-1] if "the same code as HEAD" in said else sha
            assert _package_hash_at(root, at) == code, f"a run says it is the code of {at}, but its hash {code} is not"


def _package_hash_at(root: Path, commit: str) -> str:
    """The package's code hash (`common/version.code_version`) computed from the files of `commit`."""
    import importlib.util
    import io
    import tarfile
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tar = subprocess.run(["git", "archive", commit, PKG.name], cwd=root, capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            t.extractall(tmp, filter="data")
        spec = importlib.util.spec_from_file_location("_version_at", Path(tmp) / PKG.name / "common" / "version.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod.code_version()


# ----------------------------------------------------------------------------- the README says only what is so
def _param_key_exists(key: str) -> bool:
    """Does a dotted params key name a field of the schema (a TRL / PEFT `args` / `lora` mapping, a source or a
    `max_items` name may hold anything below it)?"""
    from pydantic import BaseModel

    from hetfb_utils.common.params import Params

    model = Params
    for part in key.split("."):
        if model is None:
            return True  # below a mapping or a list of sources: any name
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return False
        ann = fields[part].annotation
        inner = [a for a in getattr(ann, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else (inner[0] if inner else None)
    return True


def test_the_readme_names_only_what_exists():
    """Every `make` target, params key (`section.key`), notebook cell tag and notebook parameter the README names
    exists (it once named a `walkthrough` tag no cell had, and a `variant` parameter notebook 06 lacks)."""
    import re

    import nbformat

    readme = (REPO / "README.md").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), re.M))
    for t in set(re.findall(r"\bmake ([a-z][a-z-]*)", readme)):
        assert t in targets, f"README names `make {t}`, which the Makefile lacks"
    from hetfb_utils.common.params import Params

    sections = set(Params.model_fields)
    for key in set(re.findall(r"`-?p? ?([a-z_]+(?:\.[a-z_0-9]+)+)[=`: ]", readme)):
        if key.split(".")[0] in sections and key.rsplit(".", 1)[1] not in ("py", "yaml", "md", "json", "csv"):
            assert _param_key_exists(key), f"README names the params key `{key}`, which the schema lacks"
    notebooks = {p.name: nbformat.read(p, 4) for p in sorted((REPO / "notebooks").glob("*.ipynb"))}
    tags = {t for nb in notebooks.values() for c in nb.cells for t in c.metadata.get("tags", [])}
    for t in set(re.findall(r"tagged `([a-z_-]+)`", readme)):
        assert t in tags, f"README names the cell tag `{t}`, which no notebook cell has"
    for names, which in re.findall(r"parameters` cell \(([^)]*)\)[^.]*?notebooks? ([0-9, –-]+)", readme):
        wanted = set(re.findall(r"`([a-z_]+)`", names))
        numbers = [int(x) for x in re.findall(r"\d+", which)]
        lo, hi = min(numbers), max(numbers)
        for name, nb in notebooks.items():
            if lo <= int(name[:2]) <= hi:
                cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
                have = set(re.findall(r"^([a-z_]+) =", cell.source, re.M))
                assert wanted <= have, f"{name}: README says its parameters include {sorted(wanted - have)}"


def test_nothing_points_at_issue_numbers():
    """The repository stands alone: no document, notebook, module or params file cites an issue by number."""
    import re

    hits = []
    for pattern in ("README.md", "RESULTS.md", "docs/*.md", "notebooks/*.ipynb", "params/*.yaml", "tools/*.py"):
        for f in REPO.glob(pattern):
            hits += [f"{f.name}: {m}" for m in re.findall(r"(?i)\bissues?[ -]#?\d+", f.read_text())]
    for f in PKG.rglob("*.py"):
        hits += [f"{f.name}: {m}" for m in re.findall(r"(?i)\bissues?[ -]#?\d+", f.read_text())]
    assert not hits, hits


def test_no_function_over_60_lines_without_a_reason():
    """A function longer than 60 lines says why in a `# long:` comment; a module stays near 400 lines."""
    import ast

    long = []
    for f in PKG.rglob("*.py"):
        src = f.read_text()
        lines = src.splitlines()
        assert len(lines) <= 420, f"{f.name} has {len(lines)} lines: split it by concern"
        for n in ast.walk(ast.parse(src)):
            if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) or n.end_lineno - n.lineno < 60:
                continue
            if "# long:" not in "\n".join(lines[n.lineno - 1 : n.end_lineno]):
                long.append(f"{f.name}:{n.name} ({n.end_lineno - n.lineno + 1} lines)")
    assert not long, long

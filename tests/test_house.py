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

PKG = Path(__file__).resolve().parents[1] / "hetfb_utils"
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
    """A fix to the package's code (another code version) re-evaluates every model and re-runs every
    notebook, and the runner says why."""
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
    new_parts = runner._stage_parts(tiny, stage, None)
    assert evaluation.model_fingerprint(tiny, spec) != fp and runner._stage_key(new_parts) != runner._stage_key(parts)
    assert runner._why(marker, new_parts, False) == "hetfb_utils code changed"
    assert runner._why(tiny.run_dir / "none.json", new_parts, False) == "not run yet"


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
    """RESULTS.md is generated (`make results`), never edited: its header names a clean tree, no run it quotes was
    made from uncommitted code, every commit it names is in this repository's history, and it holds no machine's
    absolute path."""
    import re
    import subprocess

    root = PKG.parent
    text = (root / "RESULTS.md").read_text()
    assert "Generated by `python -m hetfb_utils results`" in text and "(clean tree)" in text.split("\n\n")[1]
    assert "+dirty" not in text, "a run or the file itself came from uncommitted code: regenerate from a clean tree"
    assert not re.search(r"`/(work|home|root|tmp)/", text), "absolute paths: regenerate with this version"
    if (root / ".git").exists():
        for sha in set(re.findall(r"git ([0-9a-f]{7,40})\b", text)):
            known = subprocess.run(["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=root, capture_output=True)
            assert known.returncode == 0, f"RESULTS.md names commit {sha}, which is not in this repository"

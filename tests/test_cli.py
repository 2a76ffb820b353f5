"""Every command of `python -m hetfb_utils` run once on tiny params (the commands the notebook tests do not reach
through the runner), and every params file loaded and validated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hetfb_utils.__main__ import main, parser
from hetfb_utils.common import load_params

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.notebooks  # they read the shared tiny run


@pytest.mark.parametrize("path", sorted(p.name for p in (REPO / "params").glob("*.yaml")))
def test_every_params_file_loads_and_validates(path, capsys):
    p = load_params(f"params/{path}")
    assert p.run_name and p.data.sources and p.train_variants
    assert main(["validate", f"params/{path}"]) == 0 and "run_name:" in capsys.readouterr().out


def test_every_subcommand_has_its_own_function():
    cmds = parser()._subparsers._group_actions[0].choices
    assert set(cmds) == {
        "run",
        "seeds",
        "compare",
        "results",
        "train",
        "audit",
        "bench",
        "plan",
        "validate",
        "params-doc",
    }
    assert len({c.get_default("func") for c in cmds.values()}) == len(cmds)


def test_compare_results_train_audit_plan_and_params_doc(tiny_run, tmp_path, capsys):
    """Each command does its real work on the tiny model: `train` trains (the stage store off, forced), `run --only
    data` executes notebook 01 for a new run, `compare` and `results` read a finished run; the same run given twice
    is one clear error."""
    over, _, _ = tiny_run
    p = load_params("tiny", over)
    ov = [x for o in over for x in ("-p", o)]
    assert main(["compare", str(p.run_dir), "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "summary.md").is_file() and (tmp_path / "cmp" / "claims.csv").is_file()
    assert main(["compare", str(p.run_dir), str(p.run_dir), "--out", str(tmp_path / "twice")]) == 2
    assert "given more than once" in capsys.readouterr().err
    assert main(["results", str(p.run_dir), "--compare", str(tmp_path / "cmp"), "--out", str(tmp_path / "R.md")]) == 0
    assert "## Run `tiny`" in (tmp_path / "R.md").read_text()
    fresh = [*ov, "-p", f"output_root={tmp_path / 'fresh'}", "-p", "training.reuse_stages=false"]
    assert main(["run", "params/tiny.yaml", *fresh, "--only", "data", "--force"]) == 0  # notebook 01 executes here
    nb01 = json.loads((tmp_path / "fresh" / "tiny" / "manifest.json").read_text())["stages"]["01_data_union.ipynb"]
    assert nb01["status"] == "done" and "reused_from" not in nb01 and nb01["seconds"] > 0, nb01
    assert (tmp_path / "fresh" / "tiny" / "data" / "union.parquet").is_file()
    assert main(["run", "params/tiny.yaml", *fresh, "--only", "selection"]) == 0
    capsys.readouterr()
    assert main(["train", "sft", "params/tiny.yaml", "--variant", "hd-0.5", *fresh, "--force"]) == 0
    man = json.loads((tmp_path / "fresh" / "tiny" / "models" / "hd-0.5" / "sft" / "manifest.json").read_text())
    assert "reused_from" not in man and man["steps"] == p.sft.args["max_steps"]  # it trained, here
    assert main(["audit", "params/tiny.yaml", *ov]) == 0
    out = capsys.readouterr().out
    assert "detoxify.toxicity:lower" in out and "rank:lower" in out and "shuffled" in out
    assert main(["plan", "params/paper.yaml"]) == 0 and "GPU-hours" in capsys.readouterr().out
    doc = tmp_path / "params.md"
    assert main(["params-doc", "--out", str(doc)]) == 0 and "`reward.method`" in doc.read_text()
    assert main(["results", str(tmp_path / "does-not-exist")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_bench_runs_on_tiny_params(tmp_path, monkeypatch):
    """`make bench` on the tiny model (its figures are meaningless there; the code paths are the real bench's)."""
    from hetfb_utils.pipeline import bench

    monkeypatch.setattr(bench, "REPO_ROOT", tmp_path)
    monkeypatch.setenv("HETFB_CACHE", str(tmp_path / "cache"))
    assert main(["bench", "--params", "params/tiny.yaml", "--skip-reproduce", "--quick"]) == 0
    res = json.loads((tmp_path / "outputs" / "bench" / "bench.json").read_text())
    assert res["scorer"]["max_abs_diff_logprob"] < 1e-4  # the batched scorer agrees with the per-token reference
    assert res["scorer"]["speedup"] > 1 and "precision" in res  # and is faster, even on the tiny model
    assert (tmp_path / "outputs" / "bench" / "bench.md").read_text().startswith("# hetfb benchmark")

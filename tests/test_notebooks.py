"""Every notebook executed by papermill through the runner with params/tiny.yaml. One finished tiny run is shared
by the tests that read it (`tiny_run`); the extra mixes stop after the notebooks they assert on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hetfb_utils.common import load_params
from hetfb_utils.pipeline.runner import RunFailed, execute

pytestmark = pytest.mark.notebooks


def test_runner_executes_all_notebooks_then_resumes(tiny_run, tmp_path):
    tiny_overrides, man, logs = tiny_run
    logs = list(logs)
    p = load_params("tiny", tiny_overrides)
    run = p.run_dir
    for stage in ("sft", "reward", "ppo"):  # trained by this run, not copied from a stage store
        assert "reused_from" not in json.loads((run / "models" / "hd-0.5" / stage / "manifest.json").read_text())
    for nb in (
        "01_data_union",
        "02_quality_diversity_selection",
        "03_lora_sft",
        "04_reward_model_ppo",
        "05_bias_and_oasst_evaluation",
    ):
        assert (run / "notebooks" / f"{nb}.ipynb").is_file()
    t1 = pd.read_csv(run / "tables" / "table1_winobias.csv")
    assert list(t1["model"]) == ["Base", "S", "R", "HD-0.5-S", "HD-0.5-R", "HD-1.0-S", "HD-1.0-R"]
    assert t1[["Bias", "Bias (Entropy)", "Bias (Cluster)", "Accuracy", "Similarity"]].notna().all().all()
    t1_ci = pd.read_csv(run / "tables" / "table1_winobias_ci.csv")
    assert {"value", "lo", "hi", "delta", "delta_lo", "delta_hi", "p"} <= set(t1_ci.columns)
    assert (t1_ci["lo"] <= t1_ci["value"] + 1e-12).all() and (t1_ci["value"] <= t1_ci["hi"] + 1e-12).all()
    assert t1_ci.loc[t1_ci.model != "Base", "p"].between(0, 1).all()
    assert "[" in (run / "tables" / "table1_winobias.md").read_text()
    for f in (
        "table1_side_by_side.md",
        "ifeval.csv",
        "differences.csv",
        "winogrande_ci.csv",
        "winogender.csv",
        "winogrande.csv",
        "oasst_heldout.csv",
        "crows_pairs.csv",
        "qualitative.csv",
        "training_summary.csv",
        "01_union_composition.csv",
        "02_variant_sizes.csv",
    ):
        assert (run / "tables" / f).is_file(), f
    for f in ("01_union.png", "02_selection_projection.png", "05_metrics_vs_fraction.png", "05_heatmap.png"):
        assert (run / "figures" / f).stat().st_size > 1000, f
    assert "model `tiny-random`" in (run / "tables" / "table1_winobias.md").read_text()
    for nb in (run / "notebooks").glob("*.ipynb"):  # no library warning in any output (progress bars only)
        outs = [o for c in json.loads(nb.read_text())["cells"] for o in c.get("outputs", [])]
        noisy = [
            line
            for o in outs
            if o.get("name") == "stderr"
            for line in "".join(o.get("text", "")).splitlines()
            if re.search(r"warn|deprecat", line, re.I)
        ]
        assert not noisy, (nb.name, noisy[:5])
    # notebook 05's worked example: the five metrics by hand agree with the evaluate module on the same
    # inputs to 1e-6, and with the batched run's value for the pair to float32 precision
    ex = pd.read_csv(run / "tables" / "05_worked_example.csv").set_index("metric")
    assert list(ex.index) == ["Bias", "Bias (Entropy)", "Bias (Cluster)", "Accuracy", "Similarity"]
    assert (ex["module − by hand"] <= 1e-6).all() and (ex["batched − by hand"] <= 1e-4).all(), ex
    assert ex.loc["Bias", "by hand"] > 0  # a real pair: the two prompts differ
    # while a notebook runs, the console shows the training step and the model being evaluated
    assert any(re.search(r"SFT \[[\w.-]+\]: step \d+/\d+", line) for line in logs), logs
    assert any("evaluation: " in line for line in logs), logs
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["data_hashes"] and manifest["packages"]["trl"] == "1.12.0" and man["wall_time_s"] > 0
    assert all(s["status"] == "done" for s in manifest["stages"].values())
    # a warm re-run skips every completed notebook
    logs.clear()
    warm = execute("params/tiny.yaml", tiny_overrides, log=logs.append)
    assert sum("complete, skipped" in line for line in logs) == 5
    # ... and keeps the run's wall time (the sum of its stages), reporting its own second apart
    assert warm["wall_time_s"] == man["wall_time_s"] == round(sum(s["seconds"] for s in manifest["stages"].values()), 1)
    assert warm["last_invocation_s"] < 30
    # notebook 05 again, every result now read from the evaluation cache: the same tables to the byte
    # (a freshly computed result once kept its own key order: winogender/ifeval columns moved)
    fresh = {f.name: f.read_bytes() for f in (run / "tables").glob("*.csv")}
    logs.clear()
    execute("params/tiny.yaml", tiny_overrides, only=["eval"], force=True, log=logs.append)
    assert not any("evaluation:" in line for line in logs)  # nothing computed
    assert {f.name: f.read_bytes() for f in (run / "tables").glob("*.csv")} == fresh
    # RESULTS.md generated from the run: Table 1 beside the paper's, the other tables, stamped
    from hetfb_utils.analysis.results import write_results

    text = write_results([run], tmp_path / "RESULTS.md").read_text()
    for needle in (
        "## Run `tiny`",
        "Table 1 (WinoBias), ours beside the paper's",
        "Bias [paper]",
        "0.4585",
        "one training seed",
        "WinoGrande accuracy",
        "seeds: data 42, training 42, evaluation 42",
        "forward",
        "GFLOP/s",
        f"git {manifest['git']}",
        f"code {manifest['code']}",
    ):
        assert needle in text, needle
    assert str(run) not in text  # no machine's absolute path: paths as a reader of the repository sees them
    b = json.loads((run / "models" / "hd-0.5" / "reward" / "manifest.json").read_text())["metrics"]
    assert b["learned_sources"] is not None and "reward model learned:" in text  # what this run's reward learned
    # an evaluation-only change re-runs only notebook 05 (training is not redone)
    logs.clear()
    execute("params/tiny.yaml", tiny_overrides + ["evaluation.crows_max=4"], log=logs.append)
    assert sum("complete, skipped" in line for line in logs) == 4


def test_runner_reports_failing_notebook(tiny_overrides):
    with pytest.raises(RunFailed) as e:
        execute("params/tiny.yaml", tiny_overrides + ["data.sources.0.split=train_zz"], only=["data"])
    assert "01_data_union.ipynb failed" in str(e.value) and "train_zz" in str(e.value)
    assert "executed notebook" in str(e.value)


def test_notebooks_ask_for_the_kernel_make_lab_registers():
    """`make lab` registers the project's environment as kernel `hetfb`; every notebook asks for it,
    so JupyterLab (or any Jupyter front end) runs it in that environment, not a system Python."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    registered = re.search(r"ipykernel install --user --name (\S+)", (root / "Makefile").read_text()).group(1)
    for nb in sorted((root / "notebooks").glob("*.ipynb")):
        assert json.loads(nb.read_text())["metadata"]["kernelspec"]["name"] == registered, nb.name


def test_notebook_kernels_run_with_transport_encryption(tmp_path):
    """The runner's kernels get CurveZMQ keys (ipykernel otherwise warns at every start that it runs
    over TCP without encryption) and still answer."""
    import zmq
    from jupyter_client import KernelManager

    from hetfb_utils.pipeline.runner import kernel_config

    if not zmq.has("curve"):
        pytest.skip("this pyzmq has no CurveZMQ")
    km = KernelManager(kernel_name="python3", config=kernel_config())
    err = tmp_path / "kernel.err"
    with open(err, "w") as f:
        km.start_kernel(stderr=f)
    try:
        assert "curve_secretkey" in km.get_connection_info()
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)
    assert "without encryption" not in err.read_text()


def test_controls_reuse_stages_and_compare_runs(tiny_run, tmp_path):
    """A controls run after a run trains only its rand-f variants (the rest comes from the stage
    store, the manifests say from which run), `compare` pairs HD-f with rand-f and finds no
    difference between a run and itself, and notebook 06 executes on the two runs."""
    import papermill as pm

    from hetfb_utils.analysis import comparison as K
    from hetfb_utils.pipeline.runner import NOTEBOOK_DIR

    tiny_overrides = tiny_run[0]  # the shared run's store: the controls run reuses its stages
    logs: list[str] = []
    controls = tiny_overrides + ["run_name=tiny-controls", "selection.strategies=[quality_diversity,random]"]
    execute("params/tiny.yaml", controls, log=logs.append)
    p, c = load_params("tiny", tiny_overrides), load_params("tiny", controls)
    for v in ("wino", "hd-0.5", "hd-1.0", "rand-1.0"):  # rand-1.0 has hd-1.0's rows
        for stage in ("sft", "reward", "ppo"):
            man = json.loads((c.run_dir / "models" / v / stage / "manifest.json").read_text())
            assert man["reused_from"]["run"] == "tiny", (v, stage)
    assert "reused_from" not in json.loads((c.run_dir / "models" / "rand-0.5" / "sft" / "manifest.json").read_text())
    assert not any(re.search(r"SFT \[(hd|wino)", line) for line in logs)
    assert any(re.search(r"SFT \[rand-0.5\]: step", line) for line in logs), logs
    out = K.compare([p.run_dir, c.run_dir])
    ctl = out["controls"]
    assert {"RAND-0.5-S", "RAND-0.5-R", "RAND-1.0-S"} <= set(ctl["model"]) and set(ctl["reference"]) <= {
        "HD-0.5-S",
        "HD-0.5-R",
        "HD-1.0-S",
        "HD-1.0-R",
    }
    same = out["across_runs"]
    assert len(same) and (same["delta"] == 0).all()  # the same models, reused: identical items
    from hetfb_utils.common.errors import RunReadError

    with pytest.raises(RunReadError, match="more than once"):  # one run given twice is refused, with the reason
        K.compare([p.run_dir, p.run_dir])
    nb = tmp_path / "06.ipynb"
    pm.execute_notebook(
        str(NOTEBOOK_DIR / "06_compare_runs.ipynb"),
        str(nb),
        kernel_name="python3",
        parameters={"runs": [str(p.run_dir), str(c.run_dir)], "out_dir": str(tmp_path / "cmp")},
        cwd=str(NOTEBOOK_DIR),
        progress_bar=False,
    )
    assert (tmp_path / "cmp" / "controls_table1.png").stat().st_size > 1000
    assert "Controls" in (tmp_path / "cmp" / "summary.md").read_text()


def test_notebooks_stay_readable():
    """Each stage notebook: at most ~30 cells, code cells of at most ~25 lines (ruff-formatted), a worked example
    and exercises (by difficulty) at the end."""
    from hetfb_utils.pipeline.runner import NOTEBOOK_DIR

    for path in sorted(NOTEBOOK_DIR.glob("0*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        assert len(cells) <= 30, (path.name, len(cells))
        for c in cells:
            if c["cell_type"] == "code":
                assert len("".join(c["source"]).splitlines()) <= 25, (path.name, "".join(c["source"])[:80])
        if path.name[:2] in ("01", "02", "03", "04", "05"):
            text = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
            assert any(t.startswith("## Worked example") for t in text), path.name
            assert text[-1].startswith("## Exercises") and all(
                k in text[-1] for k in ("(easy)", "(medium)", "(harder)")
            ), path.name


def test_a_seed_group_reuses_data_and_base_and_compares_at_recipe_level(tiny_overrides, tmp_path):
    """Two training seeds through `run_seeds` (what `make seeds` runs): the second seed reuses the first's
    union and selection (its manifest says so) and Base's evaluation, trains its own model; `compare` reports
    recipe-level intervals, the A/A table and the claims; notebook 06 executes on the group."""
    import papermill as pm

    from hetfb_utils.analysis import comparison
    from hetfb_utils.pipeline.runner import NOTEBOOK_DIR
    from hetfb_utils.pipeline.seeds import finished_seed_runs, run_seeds

    over = tiny_overrides + [
        f"cache_dir={tmp_path / 'own-cache'}",
        "rl.algorithm=none",
        "selection.fractions=[0.2]",  # HD-0.2: the claims' mix, so claims are tested
        "selection.wino_variant=false",
        "run_name=grp",
    ]
    from hetfb_utils.__main__ import main

    ov = [x for o in over for x in ("-p", o)]
    assert (
        main(
            [
                "seeds",
                "params/tiny.yaml",
                "--seeds",
                "42",
                "43",
                "--replicate",
                "1",
                "--out",
                str(tmp_path / "cmp0"),
                *ov,
            ]
        )
        == 0
    )
    rep = pd.read_csv(tmp_path / "cmp0" / "replication.csv")  # the claims re-scored on a new seed, s44
    assert set(rep["new_seeds"].dropna()) <= {"s44"} and len(rep) == 11
    assert set(rep["status"]) <= {"replicated", "did not replicate", "nothing to replicate", "not tested"}
    assert "new_p_holm" not in rep.columns  # no second Holm adjustment
    pooled = pd.read_csv(tmp_path / "cmp0-pooled" / "claims.csv")  # the headline: every seed, pooled
    assert (pd.read_csv(tmp_path / "cmp0-pooled" / "groups.csv")["k"] == 3).all()
    assert list(rep["headline_verdict"]) == list(pooled["verdict"])
    assert (tmp_path / "cmp0-pooled" / "replication.csv").is_file()
    footer = (tmp_path / "cmp0" / "replication.md").read_text().rstrip().splitlines()[-1]
    assert footer.startswith("_new seeds: grp-s44 · git ") and str(tmp_path) not in footer, footer
    assert (Path(over[0].split("=", 1)[1]) / "grp-s44" / "eval" / "results.json").is_file()
    runs = run_seeds("params/tiny.yaml", [42, 43], over, log=lambda *_: None)  # done: read back, nothing trains
    assert [Path(r).name for r in runs] == ["grp-s42", "grp-s43"]
    # notebook 06's default: the finished seed runs, in seed order (s44 the replication's)
    assert [Path(r).name for r in finished_seed_runs("params/tiny.yaml", over)] == ["grp-s42", "grp-s43", "grp-s44"]
    second = json.loads((Path(runs[1]) / "manifest.json").read_text())
    for nb in ("01_data_union.ipynb", "02_quality_diversity_selection.ipynb"):
        assert second["stages"][nb]["reused_from"]["run"] == "grp-s42", second["stages"][nb]
    assert second["seeds"] == {"data": 42, "training": 43, "evaluation": 42}
    sft = json.loads((Path(runs[1]) / "models" / "hd-0.2" / "sft" / "manifest.json").read_text())
    assert sft["key"]["seeds"] == {"data": 42, "training": 43} and "reused_from" not in sft
    results = {r["model"]: r for r in json.loads((Path(runs[1]) / "eval" / "results.json").read_text())}
    assert results["Base"]["winobias"]["produced_by_run"] == "grp-s42"  # Base: evaluated once
    assert results["HD-0.2-S"]["winobias"]["produced_by_run"] == "grp-s43"
    first = {r["model"]: r for r in json.loads((Path(runs[0]) / "eval" / "results.json").read_text())}
    assert first["HD-0.2-S"]["winobias"]["items"]["id"] == results["HD-0.2-S"]["winobias"]["items"]["id"]
    out, saved = comparison.compare_and_save(runs, tmp_path / "cmp", log=lambda *_: None)
    assert list(out["groups"]["k"]) == [2]
    vb = out["recipe_differences"]
    vb = vb[(vb.reference == "Base") & (vb.table == "table1_winobias")]
    assert len(vb) == 5 and set(vb["conclusion"]) == {
        f"recipe, exploratory (2 vs 0 seeds x {vb['items'].iloc[0]} items)"
    }
    aa = out["aa_summary"].set_index("test")
    assert aa.loc["item-level (one seed vs one seed)", "comparisons"] == 5  # 1 pair x 5 metrics
    assert len(aa) == 1  # split halves need two seeds a side: none with two seeds
    verdicts = {"supported", "contradicted", "not distinguishable", "not tested"}
    assert {v.split(" (")[0] for v in out["claims"]["verdict"]} <= verdicts
    tested = out["claims"].dropna(subset=["estimate"])
    assert len(tested) and tested["detectable_80"].map(np.isfinite).all()  # defined at two seeds (df near 0)
    assert tested["conclusion"].str.contains("s42 s43").all()  # the verdict names its seeds
    adj = tested.dropna(subset=["adj_lo"])  # a contrast with no variance (equal on every item) has no pivot
    assert len(adj) and (adj["adj_lo"] <= adj["lo"] + 1e-9).all() and (adj["adj_hi"] >= adj["hi"] - 1e-9).all()
    assert (saved / "table1_recipe.md").is_file() and (saved / "claims.md").is_file()
    from hetfb_utils.analysis.results import README_END, README_START, update_readme

    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold\n{README_END}\nrest\n")
    assert update_readme(saved, readme) and not update_readme(saved, readme)  # generated; then up to date
    block = readme.read_text()
    assert "C1: The filtered heterogeneous mix" in block and "**not tested**" in block and "rest" in block
    nb = tmp_path / "06.ipynb"
    pm.execute_notebook(
        str(NOTEBOOK_DIR / "06_compare_runs.ipynb"),
        str(nb),
        kernel_name="python3",
        parameters={"runs": runs, "out_dir": str(tmp_path / "cmp06")},
        cwd=str(NOTEBOOK_DIR),
        progress_bar=False,
    )
    text = nb.read_text()
    assert "recipe, exploratory (2 vs 0 seeds" in text and "A/A" in text


MIXES = {
    "no-oasst": lambda f: (
        "[{name: winogrande, type: winogrande, split: train_xs, max_rows: 16}, "
        "{name: winobias, type: winobias, split: dev, max_rows: 12}, "
        f"{{name: chat, type: pairwise, path: {f['pairwise']}}}]"
    ),
    "no-winogrande": lambda f: (
        "[{name: oasst, type: oasst, split: validation, label: detoxify.toxicity, "
        "heldout_fraction: 0.2, max_rows: 24}, {name: winobias, type: winobias, split: dev, max_rows: 12}]"
    ),
    "numeric-and-pairwise": lambda f: (
        f"[{{name: scored, type: numeric, path: {f['numeric']}, label: score}}, "
        f"{{name: chat, type: pairwise, path: {f['pairwise']}}}]"
    ),
}


@pytest.mark.parametrize("mix", list(MIXES))
def test_every_notebook_runs_on_a_params_only_mix(tiny_overrides, tmp_path, mirror, mix):
    """Notebooks 01-05 on mixes the paper did not use: without OASST, without WinoGrande, and a numeric CSV +
    a chat-format pairwise file alone. The worked examples pick from the sources the mix has and say what
    they skipped."""
    from conftest import write_mix_files

    files = write_mix_files(tmp_path / "data", mirror, n=20)
    over = tiny_overrides + [
        f"cache_dir={tmp_path / 'own-cache'}",
        f"run_name=mix-{mix}",
        "selection.fractions=[1.0]",
        f"data.sources={MIXES[mix](files)}",
        "selection.wino_variant=false",
        "selection.n_clusters=2",
        "reward.eval_fraction=0.2",  # custom sources have no held-out pool: the reward model is judged on this
    ]
    only = None if mix == "numeric-and-pairwise" else ["data", "selection"]  # one mix runs the whole chain
    man = execute("params/tiny.yaml", over, only=only, log=lambda *_: None)
    assert all(s["status"] == "done" for s in man["stages"].values()), man["stages"]
    run = load_params("tiny", over).run_dir
    nb01 = (run / "notebooks" / "01_data_union.ipynb").read_text()
    if mix == "no-oasst":
        assert "no scored source (`oasst` or `numeric`)" in nb01
    if mix == "numeric-and-pairwise":
        assert "[scored] prompt:" in nb01 and "no winogrande / winobias source" in nb01
    if only is None:
        t1 = pd.read_csv(run / "tables" / "table1_winobias.csv")
        assert list(t1["model"]) == ["Base", "HD-1.0-S", "HD-1.0-R"]
        assert (run / "notebooks" / "04_reward_model_ppo.ipynb").is_file()
        # no held-out pool: the reward model's held-out slice is held out of RL training and judges it
        from hetfb_utils.selection import load_variant

        p = load_params("tiny", over)
        rm = json.loads((run / "models" / "hd-1.0" / "reward" / "manifest.json").read_text())["metrics"]
        rl = json.loads((run / "models" / "hd-1.0" / p.rl.algorithm / "manifest.json").read_text())["metrics"]
        held = rm["judgement"]["all"]["pairs"]
        assert held > 0 and rl["prompts"] <= len(load_variant(p, "hd-1.0")) - held


@pytest.mark.parametrize("algorithm", ["rloo", "dpo"])
def test_notebook_04_trains_in_view_under_every_algorithm(tiny_run, tmp_path, algorithm):
    """Notebook 04 with `rl.algorithm` rloo and dpo (ppo: the runner's own run above) on the tiny run: the stage is
    built by the pipeline's builder and trained on the page, and the algorithm's worked example (an RLOO group, a
    DPO margin) executes."""
    import papermill as pm

    from hetfb_utils.pipeline.runner import NOTEBOOK_DIR

    over = [*tiny_run[0], f"rl.algorithm={algorithm}"]
    nb = tmp_path / "04.ipynb"
    pm.execute_notebook(
        str(NOTEBOOK_DIR / "04_reward_model_ppo.ipynb"),
        str(nb),
        kernel_name="python3",
        parameters={"params_file": "../params/tiny.yaml", "overrides": over, "variant": "hd-0.5"},
        cwd=str(NOTEBOOK_DIR),
        progress_bar=False,
    )
    p = load_params("tiny", over)
    man = json.loads((p.run_dir / "models" / "hd-0.5" / algorithm / "manifest.json").read_text())
    assert "reused_from" not in man and man["stage"] == algorithm  # trained here, on the page
    text = nb.read_text()
    assert ("RLOOTrainer" if algorithm == "rloo" else "implicit reward margin") in text

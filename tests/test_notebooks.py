"""All five notebooks executed by papermill through the runner with params/tiny.yaml."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from hetfb_utils.params import load_params
from hetfb_utils.runner import RunFailed, execute

pytestmark = pytest.mark.notebooks


def test_runner_executes_all_notebooks_then_resumes(tiny_overrides, tmp_path):
    tiny_overrides = tiny_overrides + [f"cache_dir={tmp_path / 'own-cache'}"]   # trains here: no other test's stages
    logs: list[str] = []
    man = execute("params/tiny.yaml", tiny_overrides, log=logs.append)
    p = load_params("tiny", tiny_overrides)
    run = p.run_dir
    for nb in ("01_data_union", "02_quality_diversity_selection", "03_lora_sft", "04_reward_model_ppo",
               "05_bias_and_oasst_evaluation"):
        assert (run / "notebooks" / f"{nb}.ipynb").is_file()
    t1 = pd.read_csv(run / "tables" / "table1_winobias.csv")
    assert list(t1["model"]) == ["Base", "S", "R", "HD-0.5-S", "HD-0.5-R", "HD-1.0-S", "HD-1.0-R"]
    assert t1[["Bias", "Bias (Entropy)", "Bias (Cluster)", "Accuracy", "Similarity"]].notna().all().all()
    t1_ci = pd.read_csv(run / "tables" / "table1_winobias_ci.csv")
    assert {"value", "lo", "hi", "delta", "delta_lo", "delta_hi", "p"} <= set(t1_ci.columns)
    assert (t1_ci["lo"] <= t1_ci["value"] + 1e-12).all() and (t1_ci["value"] <= t1_ci["hi"] + 1e-12).all()
    assert t1_ci.loc[t1_ci.model != "Base", "p"].between(0, 1).all()
    assert "[" in (run / "tables" / "table1_winobias.md").read_text()
    for f in ("table1_side_by_side.md", "ifeval.csv", "differences.csv", "winogrande_ci.csv", "winogender.csv", "winogrande.csv", "oasst_heldout.csv", "crows_pairs.csv",
              "qualitative.csv", "training_summary.csv", "01_union_composition.csv", "02_variant_sizes.csv"):
        assert (run / "tables" / f).is_file(), f
    for f in ("01_union.png", "02_selection_projection.png", "05_metrics_vs_fraction.png", "05_heatmap.png"):
        assert (run / "figures" / f).stat().st_size > 1000, f
    assert "model `tiny-random`" in (run / "tables" / "table1_winobias.md").read_text()
    for nb in (run / "notebooks").glob("*.ipynb"):  # no library warning in any output (progress bars only)
        outs = [o for c in json.loads(nb.read_text())["cells"] for o in c.get("outputs", [])]
        noisy = [line for o in outs if o.get("name") == "stderr" for line in "".join(o.get("text", "")).splitlines()
                 if re.search(r"warn|deprecat", line, re.I)]
        assert not noisy, (nb.name, noisy[:5])
    # notebook 05's worked example: the five metrics by hand agree with the evaluate module on the same
    # inputs to 1e-6, and with the batched run's value for the pair to float32 precision
    ex = pd.read_csv(run / "tables" / "05_worked_example.csv").set_index("metric")
    assert list(ex.index) == ["Bias", "Bias (Entropy)", "Bias (Cluster)", "Accuracy", "Similarity"]
    assert (ex["module − by hand"] <= 1e-6).all() and (ex["batched − by hand"] <= 1e-4).all(), ex
    assert ex.loc["Bias", "by hand"] > 0          # a real pair: the two prompts differ
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

    from hetfb_utils.runner import kernel_config
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


def test_controls_reuse_stages_and_compare_runs(tiny_overrides, tmp_path):
    """A controls run after a run trains only its rand-f variants (the rest comes from the stage
    store, the manifests say from which run), `compare` pairs HD-f with rand-f and finds no
    difference between a run and itself, and notebook 06 executes on the two runs."""
    import papermill as pm

    from hetfb_utils import compare as K
    from hetfb_utils.runner import NOTEBOOK_DIR
    tiny_overrides = tiny_overrides + [f"cache_dir={tmp_path / 'own-cache'}"]   # a store only these runs fill
    execute("params/tiny.yaml", tiny_overrides, log=lambda *_: None)
    logs: list[str] = []
    controls = tiny_overrides + ["run_name=tiny-controls", "selection.strategies=[quality_diversity,random]"]
    execute("params/tiny.yaml", controls, log=logs.append)
    p, c = load_params("tiny", tiny_overrides), load_params("tiny", controls)
    for v in ("wino", "hd-0.5", "hd-1.0", "rand-1.0"):        # rand-1.0 has hd-1.0's rows
        for stage in ("sft", "reward", "ppo"):
            man = json.loads((c.run_dir / "models" / v / stage / "manifest.json").read_text())
            assert man["reused_from"]["run"] == "tiny", (v, stage)
    assert "reused_from" not in json.loads((c.run_dir / "models" / "rand-0.5" / "sft" / "manifest.json").read_text())
    assert not any(re.search(r"SFT \[(hd|wino)", line) for line in logs)
    assert any(re.search(r"SFT \[rand-0.5\]: step", line) for line in logs), logs
    out = K.compare([p.run_dir, c.run_dir])
    ctl = out["controls"]
    assert {"RAND-0.5-S", "RAND-0.5-R", "RAND-1.0-S"} <= set(ctl["model"]) and set(ctl["reference"]) <= {
        "HD-0.5-S", "HD-0.5-R", "HD-1.0-S", "HD-1.0-R"}
    same = out["across_runs"]
    assert len(same) and (same["delta"] == 0).all()          # the same models, reused: identical items
    twice = K.compare([p.run_dir, p.run_dir])["across_runs"]
    assert len(twice) and (twice[["delta", "delta_lo", "delta_hi"]] == 0).all().all() and (twice["p"] == 1).all()
    nb = tmp_path / "06.ipynb"
    pm.execute_notebook(str(NOTEBOOK_DIR / "06_compare_runs.ipynb"), str(nb), kernel_name="python3",
                        parameters={"runs": [str(p.run_dir), str(c.run_dir)], "out_dir": str(tmp_path / "cmp")},
                        cwd=str(NOTEBOOK_DIR), progress_bar=False)
    assert (tmp_path / "cmp" / "controls_table1.png").stat().st_size > 1000
    assert "Controls" in (tmp_path / "cmp" / "summary.md").read_text()


def test_notebooks_stay_readable():
    """Each stage notebook: at most ~30 cells, code cells of at most ~15 lines, a worked example
    and exercises (by difficulty) at the end."""
    from hetfb_utils.runner import NOTEBOOK_DIR
    for path in sorted(NOTEBOOK_DIR.glob("0*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        assert len(cells) <= 30, (path.name, len(cells))
        for c in cells:
            if c["cell_type"] == "code":
                assert len("".join(c["source"]).splitlines()) <= 15, (path.name, "".join(c["source"])[:80])
        if path.name[:2] in ("01", "02", "03", "04", "05"):
            text = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
            assert any(t.startswith("## Worked example") for t in text), path.name
            assert text[-1].startswith("## Exercises") and all(k in text[-1] for k in ("(easy)", "(medium)", "(harder)")), path.name

"""The notebooks checked in a real browser: JupyterLab on a free port, headless Chromium driven by
Selenium, every notebook opened and run through the UI (Run > Run All Cells), in order.

    make lab-check                       # params/tiny.yaml, every stage notebook 01 -> 05
    .venv/bin/python tools/lab_check.py --params params/tiny.yaml --notebooks 01 02

Each notebook is first copied with its parameters cell filled in (papermill --prepare-only: the
params file, and overrides that send outputs and caches under outputs/lab-check/), then opened in
JupyterLab, run with the menu, saved with the menu, and read back from disk. Writes
outputs/lab-check/<notebook>.png (a screenshot after the run) and report.json: per notebook, the
seconds it took, the code cells that were never executed and the cells with an error output (both
must be empty). Exits 1 when a notebook has either.

Needs the Debian packages `chromium` and `chromium-driver` and the PyPI package `selenium`
(`make lab-check` installs them).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STAGE_NOTEBOOKS = [
    "01_data_union",
    "02_quality_diversity_selection",
    "03_lora_sft",
    "04_reward_model_ppo",
    "05_bias_and_oasst_evaluation",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(names: list[str], params: str, out: Path) -> list[Path]:
    import papermill as pm

    nb_dir = out / "notebooks"
    nb_dir.mkdir(parents=True, exist_ok=True)
    overrides = [f"output_root={out / 'outputs'}", f"cache_dir={out / 'cache'}"]
    paths = []
    for name in names:
        dst = nb_dir / f"{name}.ipynb"
        pm.execute_notebook(
            str(REPO / "notebooks" / f"{name}.ipynb"),
            str(dst),
            prepare_only=True,
            parameters={"params_file": str((REPO / params).resolve()), "overrides": overrides},
            progress_bar=False,
        )
        paths.append(dst)
    return paths


def start_lab(root: Path, port: int, token: str, log: Path) -> subprocess.Popen:
    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--user", "--name", "hetfb", "--display-name", "Python (hetfb)"],
        check=True,
        capture_output=True,
    )
    env = dict(
        os.environ,
        HETFB_DATA_DIR=os.environ.get("HETFB_DATA_DIR", str(REPO.parent / "shared" / "data")),
        TRL_EXPERIMENTAL_SILENCE="1",
        PYTHONPATH=str(REPO),
    )
    cmd = [
        str(bin_dir / "jupyter"),
        "lab",
        "--no-browser",
        f"--port={port}",
        "--ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=",
        "--ServerApp.disable_check_xsrf=True",
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited ({proc.returncode}); its log: {log}") from None
            time.sleep(1)
    raise RuntimeError(f"JupyterLab did not answer on port {port} within 2 min; its log: {log}")


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1600"):
        opts.add_argument(a)
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts)


def kernels(port: int, token: str, method: str = "GET", kid: str = "") -> list:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/kernels{'/' + kid if kid else ''}",
        method=method,
        headers={"Authorization": f"token {token}"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r) if method == "GET" else []


def kernel_busy(port: int, token: str) -> bool:
    """True while no kernel is up yet or one is starting or busy."""
    ks = kernels(port, token)
    return not ks or any(k.get("execution_state") != "idle" for k in ks)


def menu(driver, top: str, item: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 60)
    wait.until(
        EC.element_to_be_clickable((By.XPATH, f"//li[contains(@class,'lm-MenuBar-item')]//div[text()='{top}']"))
    ).click()
    wait.until(
        EC.element_to_be_clickable(
            (
                By.XPATH,
                f"//li[contains(@class,'lm-Menu-item')]//div[contains(@class,'lm-Menu-itemLabel') and text()='{item}']",
            )
        )
    ).click()


def run_notebook(driver, port: int, token: str, path: Path, timeout: int) -> dict:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    t0 = time.time()
    driver.get(f"http://127.0.0.1:{port}/lab/tree/notebooks/{path.name}?token={token}&reset")
    WebDriverWait(driver, 120).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")))
    WebDriverWait(driver, 180).until(lambda d: not kernel_busy(port, token))  # the kernel started
    time.sleep(2)
    menu(driver, "Run", "Run All Cells")
    idle_since = None
    while time.time() - t0 < timeout:  # done: kernel idle, no cell queued or running
        time.sleep(2)
        prompts = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".jp-CodeCell .jp-InputPrompt")]
        if not kernel_busy(port, token) and not any("*" in p for p in prompts):
            idle_since = idle_since or time.time()
            if time.time() - idle_since > 4:
                break
        else:
            idle_since = None
    else:
        raise TimeoutError(f"{path.name}: still running after {timeout} s")
    menu(driver, "File", "Save Notebook")
    time.sleep(3)
    shot = path.parent.parent / f"{path.stem}.png"
    driver.save_screenshot(str(shot))
    for k in kernels(port, token):  # one kernel at a time
        kernels(port, token, "DELETE", k["id"])
    cells = json.loads(path.read_text())["cells"]
    code = [(i, c) for i, c in enumerate(cells) if c["cell_type"] == "code"]
    errors = [
        {"cell": i, "error": f"{o.get('ename')}: {o.get('evalue')}"}
        for i, c in code
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    return {
        "notebook": path.name,
        "seconds": round(time.time() - t0, 1),
        "code_cells": len(code),
        "not_executed": [i for i, c in code if c.get("execution_count") is None],
        "errors": errors,
        "screenshot": str(shot),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params/tiny.yaml")
    ap.add_argument("--notebooks", nargs="*", help="numbers or names (default: 01 02 03 04 05)")
    ap.add_argument("--out", default=str(REPO / "outputs" / "lab-check"))
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per notebook")
    a = ap.parse_args(argv)
    names = [n for n in STAGE_NOTEBOOKS if not a.notebooks or any(n.startswith(x) for x in a.notebooks)]
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    paths = prepare(names, a.params, out)
    port, token = free_port(), secrets.token_hex(16)
    lab = start_lab(out, port, token, out / "jupyterlab.log")
    print(f"JupyterLab on port {port}; notebooks in {out / 'notebooks'}", flush=True)
    results, driver = [], None
    try:
        driver = browser()
        for p in paths:
            r = run_notebook(driver, port, token, p, a.timeout)
            results.append(r)
            ok = not r["errors"] and not r["not_executed"]
            print(
                f"{p.name}: {'ok' if ok else 'FAILED'} in {r['seconds']} s, {r['code_cells']} code cells, "
                f"errors {r['errors']}, not executed {r['not_executed']}",
                flush=True,
            )
    finally:
        if driver is not None:
            driver.quit()
        lab.terminate()
        lab.wait(30)
        (out / "report.json").write_text(json.dumps(results, indent=1))
    failed = [r["notebook"] for r in results if r["errors"] or r["not_executed"]]
    print(
        f"report: {out / 'report.json'}; "
        + (f"FAILED: {failed}" if failed else f"all {len(results)} notebooks ran through the browser without an error")
    )
    return 1 if failed or len(results) < len(paths) else 0


if __name__ == "__main__":
    sys.exit(main())

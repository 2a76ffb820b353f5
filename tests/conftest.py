"""Shared fixtures: the real offline mirror, tiny params with their own output/cache dirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parent.parent


def _mirror() -> Path:
    d = Path(os.environ.get("HETFB_DATA_DIR") or REPO.parent / "shared" / "data")
    if not (d / "winogrande" / "train_xs.jsonl").is_file():
        pytest.exit(f"the data mirror is missing at {d}: set HETFB_DATA_DIR to shared/data", returncode=2)
    return d.resolve()


MIRROR = _mirror()
os.environ["HETFB_DATA_DIR"] = str(MIRROR)


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests that load the 135M model")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="loads the 135M embedded model: `make test-slow`")
    for it in items:
        if "slow" in it.keywords:
            it.add_marker(skip)


@pytest.fixture(scope="session")
def mirror() -> Path:
    return MIRROR


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One cache (tiny model, embeddings, converted data) for the whole session."""
    return Path(os.environ.get("HETFB_CACHE") or tmp_path_factory.mktemp("cache"))


@pytest.fixture
def tiny_overrides(tmp_path, shared_cache) -> list[str]:
    return [f"output_root={tmp_path / 'outputs'}", f"cache_dir={shared_cache}"]


@pytest.fixture
def tiny(tiny_overrides):
    from hetfb_utils.common import load_params

    return load_params("tiny", tiny_overrides)


@pytest.fixture(scope="session")
def tiny_built(tmp_path_factory, shared_cache):
    """Stages 1-2 of params/tiny.yaml, built once per session in its own output dir."""
    from hetfb_utils import data, selection
    from hetfb_utils.common import load_params

    out = tmp_path_factory.mktemp("built")
    p = load_params("tiny", [f"output_root={out}", f"cache_dir={shared_cache}"])
    u = data.build_union(p, progress=False)
    data.save_union(u, p)
    emb = selection.embed_prompts(u.union, p, progress=False)
    sel = selection.select(u.union, emb, p)
    selection.save_selection(sel, p, u.drops)
    return p, u, emb, sel


@pytest.fixture(scope="session")
def tiny_model(tiny_built):
    from hetfb_utils.models import base_model_path, load_causal_lm, load_tokenizer

    p = tiny_built[0]
    return load_causal_lm(p), load_tokenizer(base_model_path(p))


def write_mix_files(folder: Path, mirror: Path, n: int = 30) -> dict[str, Path]:
    """Real mirror rows in the formats people bring: a `numeric` CSV (OASST prompts, each reply with its
    detoxify toxicity) and a chat-format `pairwise` JSON array (WinoGrande sentences, the correct option as
    the preferred assistant turn, UltraFeedback style)."""
    import csv
    import json
    from collections import defaultdict

    folder.mkdir(parents=True, exist_ok=True)
    msgs = [json.loads(x) for x in (mirror / "oasst1/validation_en.jsonl").read_text().splitlines()]
    by_id = {m["message_id"]: m for m in msgs}
    replies = defaultdict(list)
    for m in msgs:
        if m["role"] == "assistant" and m.get("parent_id") in by_id and (m.get("detoxify") or {}).get("toxicity"):
            replies[m["parent_id"]].append(m)
    numeric = folder / "numeric.csv"
    with open(numeric, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "response", "score"])
        for pid in [p for p, r in replies.items() if len(r) >= 2][:n]:
            for r in replies[pid]:
                w.writerow([by_id[pid]["text"], r["text"], r["detoxify"]["toxicity"]])
    rows = [json.loads(x) for x in (mirror / "winogrande/train_xs.jsonl").read_text().splitlines()[:n]]
    chat = [
        {
            "prompt": r["sentence"],
            "chosen": [
                {"role": "user", "content": r["sentence"]},
                {"role": "assistant", "content": r["option" + r["answer"]]},
            ],
            "rejected": [
                {"role": "user", "content": r["sentence"]},
                {"role": "assistant", "content": r["option" + ("2" if r["answer"] == "1" else "1")]},
            ],
        }
        for r in rows
    ]
    pairwise = folder / "pairwise.json"
    pairwise.write_text(json.dumps(chat, indent=1))
    return {"numeric": numeric, "pairwise": pairwise}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole notebook chain on params/tiny.yaml, once per session, in its own output and cache (its stages
    trained there, not read from another test's store): (overrides, manifest, the runner's log lines)."""
    from hetfb_utils.pipeline.runner import execute

    root = tmp_path_factory.mktemp("tiny-run")
    over = [f"output_root={root / 'outputs'}", f"cache_dir={root / 'cache'}"]
    logs: list[str] = []
    man = execute("params/tiny.yaml", over, log=logs.append)
    return over, man, logs

"""The params schema: shipped files, extends, overrides, and one clear error per bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from hetfb_utils.common import ParamsError, load_params
from hetfb_utils.common.params_doc import schema_markdown
from hetfb_utils.common.params_files import parse_override


@pytest.mark.parametrize("name", ["quickstart", "paper", "tiny", "helpfulness", "dpo", "custom_sources"])
def test_shipped_params_validate(name):
    p = load_params(f"params/{name}.yaml") if (REPO / f"params/{name}.yaml").exists() else pytest.skip(name)
    assert p.run_name and p.data.sources
    assert p.variant_names[0] == "wino" or not p.selection.wino_variant


def test_extends_and_overrides():
    p = load_params("tiny", ["seed=7", "sft.args.max_steps=2", "selection.fractions=[0.3,1.0]"])
    assert p.seed == 7 and p.sft.args["max_steps"] == 2
    assert p.variant_names == ["wino", "hd-0.3", "hd-1.0"]
    assert p.model.name_or_path == "tiny-random"  # from tiny.yaml
    assert p.rl.ppo.args["kl_coef"] == 0.05  # inherited from quickstart.yaml


def _write(tmp_path, obj, name="p.yaml"):
    f = tmp_path / name
    f.write_text(yaml.safe_dump(obj) if not isinstance(obj, str) else obj)
    return f


BASE = {"run_name": "x", "data": {"sources": [{"name": "winogrande", "type": "winogrande"}]}}


@pytest.mark.parametrize(
    "patch, needle",
    [
        ({"selectoin": {}}, "selectoin: unknown key"),
        ({"seed": "abc"}, "seed"),
        ({"selection": {"fractions": [0.0, 0.5]}}, "(0, 1]"),
        ({"selection": {"fractions": [1.5]}}, "(0, 1]"),
        ({"sft": {"args": {"learning_rat": 1e-5}}}, "learning_rat"),
        ({"sft": {"lora": {"rank": 8}}}, "LoraConfig"),
        ({"data": {"sources": [{"name": "o", "type": "oasst"}]}}, "needs `label`"),
        ({"data": {"sources": [{"name": "n", "type": "numeric", "label": "s"}]}}, "needs `path`"),
        ({"data": {"sources": [{"name": "w", "type": "nope"}]}}, "data.sources.0.type"),
        ({"training": {"variants": ["hd-0.9"]}}, "not built"),
        ({"selection": {"wino_source": "absent"}}, "wino_source"),
    ],
)
def test_bad_params_name_file_and_key(tmp_path, patch, needle):
    raw = {**BASE, **patch}
    f = _write(tmp_path, raw)
    with pytest.raises(ParamsError) as e:
        load_params(f)
    msg = str(e.value)
    assert str(f) in msg and needle in msg


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(_write(tmp_path, "a: [1, 2"))
    with pytest.raises(ParamsError, match="mapping"):
        load_params(_write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ParamsError, match="extends"):
        load_params(_write(tmp_path, {**BASE, "extends": "missing.yaml"}))
    _write(tmp_path, {"extends": "b.yaml"}, "a.yaml")
    _write(tmp_path, {"extends": "a.yaml"}, "b.yaml")
    with pytest.raises(ParamsError, match="loop"):
        load_params(tmp_path / "a.yaml")


def test_bad_override():
    with pytest.raises(ParamsError, match="key.sub=value"):
        load_params("tiny", ["seed"])
    with pytest.raises(ParamsError, match="selection.n_clusters"):
        load_params("tiny", ["selection.n_clusters=-1"])


def test_cli_bad_params_exit_nonzero_and_write_nothing(tmp_path):
    f = _write(tmp_path, {**BASE, "output_root": str(tmp_path / "out"), "selection": {"fractions": [2]}})
    r = subprocess.run([sys.executable, "-m", "hetfb_utils", "run", str(f)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "selection.fractions" in r.stderr and str(f) in r.stderr
    assert not (tmp_path / "out").exists()


def test_digest_stable_and_sensitive():
    a, b = load_params("tiny"), load_params("tiny")
    assert a.digest() == b.digest()
    assert a.digest("sft") != load_params("tiny", ["sft.args.max_steps=9"]).digest("sft")
    assert a.digest("data") == load_params("tiny", ["sft.args.max_steps=9"]).digest("data")


def test_schema_markdown_lists_every_section():
    md = schema_markdown()
    for key in (
        "`data.sources[].label`",
        "`selection.fractions`",
        "`sft.args`",
        "`rl.algorithm`",
        "`evaluation.batch_size`",
        "`model.name_or_path`",
    ):
        assert key in md


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(["seed", "sft", "args", "x", "0"]), min_size=1, max_size=3),
    st.one_of(st.integers(), st.floats(allow_nan=False), st.text(max_size=5)),
)
def test_override_parser_roundtrip(keys, value):
    k, v = parse_override(
        ".".join(keys)
        + "="
        + yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").removesuffix("...")
    )
    assert k == keys


def test_params_reference_is_generated():
    from hetfb_utils.common.params_doc import DOC_PATH, params_doc

    assert DOC_PATH.read_text() == params_doc(), "run `make params-doc` to regenerate docs/params.md"
    assert schema_markdown() in params_doc()


def test_override_scientific_notation():
    p = load_params("tiny", ["sft.args.learning_rate=2e-3", "run_name=1e3x"])
    assert p.sft.args["learning_rate"] == 0.002 and p.run_name == "1e3x"

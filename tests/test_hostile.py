"""Hostile and unusual inputs, one test per case: each gives one clear error naming the file, key or column (or
a counted skip), never a traceback. Grows with every fix."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hetfb_utils import data
from hetfb_utils.__main__ import main
from hetfb_utils.common import DataError, ParamsError, RunReadError, load_params
from hetfb_utils.common.params import SourceSpec


# ----------------------------------------------------------------------------- params and overrides
@pytest.mark.parametrize(
    "override,needle",
    [
        ("data.sources.7.max_rows=3", "`data.sources` has 3 entries (indices 0..2); there is no entry 7"),
        ("data.sources.x.max_rows=3", "`data.sources` is a list, index it by number (0..2) or by name"),
        ("seed.value=1", "`seed` is a single value (42), it has no sub-key 'value'"),
        ("sft.args.learning_rate.x=1", "`sft.args.learning_rate` is a single value"),
        ("seed=-1", "seed: Input should be greater than or equal to 0"),
        ("training.seed=-3", "training.seed: Input should be greater than or equal to 0"),
        ("run_name=" + "x" * 150, "run_name is 150 characters long; at most 100"),
        ("sft.args.learning_rate=fast", "learning_rate='fast'"),
        ("sft.lora.r=big", "r='big'"),
        ("rl.ppo.args.total_episodes=[1,2]", "total_episodes=[1, 2]"),
    ],
)
def test_bad_overrides_are_one_clear_error(tiny_overrides, override, needle):
    with pytest.raises(ParamsError) as e:
        load_params("tiny", tiny_overrides + [override])
    assert needle in str(e.value), str(e.value)


def test_a_number_written_as_text_is_a_number(tiny_overrides):
    p = load_params("tiny", tiny_overrides + ["sft.args.learning_rate='2e-3'"])
    assert p.sft.args["learning_rate"] == 0.002


def test_validate_names_the_wrong_typed_trl_field(capsys):
    assert main(["validate", "params/tiny.yaml", "-p", "sft.args.learning_rate=fast"]) == 2
    err = capsys.readouterr().err
    assert "sft.args" in err and "learning_rate='fast'" in err and "SFTConfig.learning_rate takes float" in err
    assert "Traceback" not in err


def _yaml(tmp_path, text: str) -> Path:
    p = tmp_path / "mix.yaml"
    p.write_text(text)
    return p


def test_a_key_given_twice_names_the_key_and_line(tmp_path):
    p = _yaml(tmp_path, "run_name: a\nseed: 1\ndata:\n  sources: []\nseed: 2\n")
    with pytest.raises(ParamsError, match=r"mix.yaml.*key 'seed' appears twice.*first at line 2"):
        load_params(p)


@pytest.mark.parametrize("value", ["[quickstart.yaml, tiny.yaml]", "{a: 1}", "''"])
def test_extends_must_be_one_file_name(tmp_path, value):
    p = _yaml(tmp_path, f"extends: {value}\nrun_name: a\n")
    with pytest.raises(ParamsError, match=r"mix.yaml: `extends` must be one file name"):
        load_params(p)


def test_yaml_alias_expansion_is_refused(tmp_path):
    bomb = ["run_name: a", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    bomb += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    p = _yaml(tmp_path, "\n".join(bomb) + "\n")
    with pytest.raises(ParamsError, match=r"expands to more than 100,000 values"):
        load_params(p)


def test_output_root_that_is_a_file_or_not_writable(tmp_path, tiny_overrides, monkeypatch, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert (
        main(
            ["run", "params/tiny.yaml", *sum((["-p", o] for o in tiny_overrides), []), "-p", f"output_root={f / 'sub'}"]
        )
        == 2
    )
    assert "is a file, not a directory" in capsys.readouterr().err
    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # root can write anywhere: simulate a user
    p = load_params("tiny", tiny_overrides + [f"output_root={tmp_path / 'ro'}"])
    with pytest.raises(ParamsError, match=r"output_root '.*ro'.*is not writable"):
        p.check_output_root()


# ----------------------------------------------------------------------------- data files as people have them
def _spec(tmp_path, name: str, content, kind="pairwise", **kw) -> SourceSpec:
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return SourceSpec(name="mine", type=kind, path=str(p), **({"label": "score"} if kind == "numeric" else {}), **kw)


def _convert(spec, tiny):
    drops = data.Drops()
    rows, _, _ = data.convert_source(spec, tiny, drops)
    return rows, drops


def test_pairwise_chat_format_takes_the_last_assistant_turn(tmp_path, tiny, mirror):
    from conftest import write_mix_files

    files = write_mix_files(tmp_path, mirror, n=5)
    rows, drops = _convert(SourceSpec(name="chat", type="pairwise", path=str(files["pairwise"])), tiny)
    assert len(rows) == 5 and not drops.counts
    wg = json.loads((mirror / "winogrande/train_xs.jsonl").read_text().splitlines()[0])
    assert rows[0]["prompt"] == wg["sentence"] and rows[0]["chosen"] == wg["option" + wg["answer"]]
    multi = [
        {
            "chosen": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "Name a colour"},
                {"role": "assistant", "content": "Blue"},
            ],
            "rejected": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "Name a colour"},
                {"role": "assistant", "content": "Seven"},
            ],
        }
    ]
    rows, _ = _convert(_spec(tmp_path, "multi.jsonl", json.dumps(multi[0]) + "\n"), tiny)
    assert (rows[0]["prompt"], rows[0]["chosen"], rows[0]["rejected"]) == ("Name a colour", "Blue", "Seven")
    assert json.loads(rows[0]["context"]) == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
    ]


def test_numbers_none_and_na_are_text(tmp_path, tiny):
    lines = [
        {"prompt": "2+2?", "chosen": 4, "rejected": 5},
        {"prompt": "Say None", "chosen": "None", "rejected": "NA"},
        {"prompt": "Pi?", "chosen": 3.14, "rejected": 3},
    ]
    rows, drops = _convert(_spec(tmp_path, "p.jsonl", "".join(json.dumps(r) + "\n" for r in lines)), tiny)
    assert [(r["chosen"], r["rejected"]) for r in rows] == [("4", "5"), ("None", "NA"), ("3.14", "3")]
    csv = "prompt,chosen,rejected\nSay None,None,NA\nEmpty,,x\n"
    rows, drops = _convert(_spec(tmp_path, "p.csv", csv), tiny)
    assert [(r["chosen"], r["rejected"]) for r in rows] == [("None", "NA")]
    assert drops.counts[("mine", "empty_text")] == 1  # a truly empty field is no text: a counted skip


def test_a_byte_order_mark_and_a_json_array_are_read(tmp_path, tiny):
    row = {"prompt": "Q", "chosen": "good", "rejected": "bad"}
    rows, drops = _convert(_spec(tmp_path, "bom.jsonl", b"\xef\xbb\xbf" + (json.dumps(row) + "\n").encode()), tiny)
    assert len(rows) == 1 and not drops.counts
    rows, drops = _convert(_spec(tmp_path, "arr.json", json.dumps([row, {**row, "prompt": "Q2"}, 7])), tiny)
    assert len(rows) == 2 and drops.counts[("mine", "malformed_json")] == 1
    rows, _ = _convert(_spec(tmp_path, "bom.csv", b"\xef\xbb\xbfprompt,chosen,rejected\nQ,good,bad\n"), tiny)
    assert len(rows) == 1


def test_a_lone_utf16_surrogate_is_a_counted_skip(tmp_path, tiny):
    """Some exporters cut an emoji in half (`"Nice \\ud83d"`): the line parses to text that cannot be written as
    UTF-8. It is a counted skip, and the rest of the file converts (it ended in a UnicodeEncodeError traceback)."""
    good = json.dumps({"prompt": "Q", "chosen": "good", "rejected": "bad"})
    lone = '{"prompt": "Q2", "chosen": "Nice \\ud83d", "rejected": "bad"}'
    rows, drops = _convert(_spec(tmp_path, "lone.jsonl", good + "\n" + lone + "\n"), tiny)
    assert len(rows) == 1 and drops.counts[("mine", "malformed_json")] == 1
    rows, drops = _convert(_spec(tmp_path, "lone.json", "[" + good + ", " + lone + "]"), tiny)
    assert len(rows) == 1 and drops.counts[("mine", "malformed_json")] == 1
    import pandas as pd

    pd.DataFrame(rows).to_parquet(tmp_path / "ok.parquet")  # what failed downstream now writes


def test_a_relative_source_path_is_read_against_the_params_file_then_the_repository(tmp_path, monkeypatch):
    """A `path` written relative to the params file (or to the repository root, where `make` runs) is found from any
    working directory (the notebooks run in notebooks/); one that is nowhere names the places looked at."""
    params_dir = tmp_path / "mine"
    (tmp_path / "data").mkdir()
    (tmp_path / "data/pairs.jsonl").write_text(json.dumps({"prompt": "Q", "chosen": "a", "rejected": "b"}) + "\n")
    params_dir.mkdir()
    (params_dir / "p.yaml").write_text(
        "extends: " + str(Path(__file__).resolve().parents[1] / "params/tiny.yaml") + "\n"
        "selection: {wino_variant: false}\n"
        "data:\n  sources:\n    - {name: mine, type: pairwise, path: ../data/pairs.jsonl}\n"
    )
    monkeypatch.chdir(tmp_path / "data")  # elsewhere, as a notebook's kernel is
    p = load_params(str(params_dir / "p.yaml"))
    assert p.data.sources[0].path == str((tmp_path / "data/pairs.jsonl").resolve())
    (params_dir / "q.yaml").write_text((params_dir / "p.yaml").read_text().replace("../data/", "../nowhere/"))
    q = load_params(str(params_dir / "q.yaml"))
    with pytest.raises(DataError, match=r"not found \(a relative path is read against the params file's folder"):
        data.convert_source(q.data.sources[0], q, data.Drops())


def _oasst_export(tmp_path, mirror, edit) -> SourceSpec:
    """The real OASST mirror file with `edit(messages)` applied, as a source of its own."""
    msgs = [json.loads(x) for x in (mirror / "oasst1/validation_en.jsonl").read_text().splitlines()]
    edit(msgs)
    (tmp_path / "oasst1").mkdir(exist_ok=True)
    (tmp_path / "oasst1/validation_en.jsonl").write_text("".join(json.dumps(m) + "\n" for m in msgs))
    return SourceSpec(name="oa", type="oasst", split="validation", label="detoxify.toxicity", heldout_fraction=0.2)


def _looped(msgs):
    """A prompter turn whose parent chain loops back to itself (a damaged export)."""
    by_id = {m["message_id"]: m for m in msgs}
    reply = next(m for m in msgs if m["role"] == "assistant" and m["parent_id"] in by_id)
    prompt = by_id[reply["parent_id"]]
    prompt["parent_id"] = reply["message_id"]  # prompt -> its own reply -> prompt -> ...


def test_an_oasst_parent_loop_is_a_counted_skip(tmp_path, tiny, mirror, monkeypatch):
    monkeypatch.setenv("HETFB_DATA_DIR", str(tmp_path))
    spec = _oasst_export(tmp_path, mirror, _looped)
    rows, held, _ = data.parse_oasst(
        data.load_oasst_rows("validation", tmp_path), spec, "en", 42, drops := data.Drops()
    )
    assert drops.counts[("oa", "parent_id_cycle")] >= 1 and len(rows) + len(held) > 300


def test_a_null_message_tree_id_is_a_counted_skip(tmp_path, tiny, mirror, monkeypatch):
    def edit(msgs):
        msgs[5]["message_tree_id"] = None

    spec = _oasst_export(tmp_path, mirror, edit)
    drops = data.Drops()
    rows, held, _ = data.parse_oasst(data.load_oasst_rows("validation", tmp_path), spec, "en", 42, drops)
    assert drops.counts[("oa", "missing_message_tree_id")] == 1 and len(rows) + len(held) > 300


def test_a_folder_of_parquet_parts_is_read(tmp_path, tiny):
    import pandas as pd

    folder = tmp_path / "pairs.parquet"  # as Spark and pandas write one: part files and a _SUCCESS marker
    folder.mkdir()
    rows = [{"prompt": f"Q{i}", "chosen": "good", "rejected": "bad"} for i in range(6)]
    pd.DataFrame(rows[:3]).to_parquet(folder / "part-00000.parquet")
    pd.DataFrame(rows[3:]).to_parquet(folder / "part-00001.parquet")
    (folder / "_SUCCESS").write_text("")
    got, drops = _convert(SourceSpec(name="mine", type="pairwise", path=str(folder)), tiny)
    assert len(got) == 6 and not drops.counts
    from hetfb_utils.data.readers import fingerprint_files

    h1 = fingerprint_files({"x": str(folder)})["x"]
    pd.DataFrame(rows[:2]).to_parquet(folder / "part-00001.parquet")  # a part changes: so does the folder's hash
    assert h1.startswith("sha256:") and fingerprint_files({"x": str(folder)})["x"] != h1
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"empty_dir is a folder with no parquet parts.*notes.txt"):
        _convert(SourceSpec(name="mine", type="pairwise", path=str(empty)), tiny)


def test_a_ragged_csv_row_names_the_file_and_line(tmp_path, tiny):
    spec = _spec(tmp_path, "ragged.csv", "prompt,chosen,rejected\nQ1,a,b\nQ2,a,b,c\n")
    with pytest.raises(DataError, match=r"ragged.csv: .*line 3.*quote a field that contains ','"):
        _convert(spec, tiny)


@pytest.mark.parametrize(
    "kind,content,missing,key",
    [
        ("pairwise", "question,good,bad\nQ,a,b\n", "['chosen', 'rejected', 'prompt']", "`chosen_column`"),
        ("numeric", "prompt,answer,score\nQ,a,1\nQ,b,2\n", "['response']", "`response_column`"),
        ("numeric", "prompt,response,rating\nQ,a,1\nQ,b,2\n", "['score']", "`label`"),
    ],
)
def test_columns_that_do_not_match_are_named(tmp_path, tiny, kind, content, missing, key):
    with pytest.raises(DataError) as e:
        _convert(_spec(tmp_path, "cols.csv", content, kind), tiny)
    msg = str(e.value)
    assert f"column(s) {missing} not found" in msg and "the file has columns" in msg and key in msg, msg


# ----------------------------------------------------------------------------- compare on damaged or foreign runs
def _fake_run(tmp_path, tiny, manifest: str | None = None, results: str | None = None) -> Path:
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    (run / "manifest.json").write_text(
        manifest if manifest is not None else json.dumps({"params": tiny.model_dump(mode="json")})
    )
    (run / "eval" / "results.json").write_text(results if results is not None else json.dumps([{"model": "Base"}]))
    return run


@pytest.mark.parametrize(
    "manifest,results,needle",
    [
        ('{"params": {"run_na', None, "manifest.json: not valid JSON"),
        (None, '[{"model": "Ba', "results.json: not valid JSON"),
        (
            json.dumps({"params": {"run_name": "x", "data": {"sources": []}, "old_key": 1}}),
            None,
            "its params do not fit this kit's schema",
        ),
        (json.dumps({"something": 1}), None, "no `params` mapping"),
        (None, json.dumps({"model": "Base"}), "expected a list of model results"),
    ],
)
def test_compare_on_a_damaged_or_foreign_run(tmp_path, tiny, capsys, manifest, results, needle):
    run = _fake_run(tmp_path, tiny, manifest, results)
    assert main(["compare", str(run)]) == 2
    err = capsys.readouterr().err
    assert needle in err and str(run) in err and "Traceback" not in err, err


def test_compare_on_a_directory_that_is_no_run(tmp_path, capsys):
    assert main(["compare", str(tmp_path)]) == 2
    assert "is not a run directory (no manifest.json)" in capsys.readouterr().err
    with pytest.raises(RunReadError):
        from hetfb_utils.analysis import load_run

        load_run(tmp_path)


# ----------------------------------------------------------------------------- launches
def test_the_natural_cpu_launch_of_two_processes_is_refused_with_the_fix(monkeypatch):
    from hetfb_utils.common.errors import TrainingError
    from hetfb_utils.pipeline import launch

    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(launch, "_processes_asked", lambda: 2)
    with pytest.raises(TrainingError, match=r"started one process, not 2.*--config_file params/accelerate/cpu_2proc"):
        launch.check_launch_here()
    monkeypatch.setenv("WORLD_SIZE", "2")  # the torchrun config: two processes, no error
    launch.check_launch_here()


# ----------------------------------------------------------------------------- stale data, interrupted stages
def test_a_changed_source_file_reruns_stage_1(tiny_overrides, tmp_path, mirror):
    """Editing a data file re-runs the notebook that read it (`data changed`), and the union has the new row."""
    import pandas as pd
    from conftest import write_mix_files

    from hetfb_utils.pipeline.runner import execute

    files = write_mix_files(tmp_path / "mine", mirror, n=6)
    over = tiny_overrides + [
        f"cache_dir={tmp_path / 'own-cache'}",
        "selection.wino_variant=false",
        "data.sources=[{name: chat, type: pairwise, path: " + str(files["pairwise"]) + "}]",
    ]
    logs: list[str] = []
    execute("params/tiny.yaml", over, only=["data"], log=logs.append)
    p = load_params("tiny", over)
    assert len(pd.read_parquet(p.run_dir / "data" / "union.parquet")) == 6
    rows = json.loads(files["pairwise"].read_text())
    rows.append({"prompt": "A new question?", "chosen": "yes", "rejected": "no"})
    files["pairwise"].write_text(json.dumps(rows))
    logs.clear()
    man = execute("params/tiny.yaml", over, only=["data"], log=logs.append)
    assert any("01_data_union.ipynb: running (data changed" in line for line in logs), logs
    assert len(pd.read_parquet(p.run_dir / "data" / "union.parquet")) == 7
    assert man["inputs"]["data"]["chat"].startswith("sha256:")


def test_a_killed_selection_loses_nothing(tiny_overrides, tmp_path):
    """After a kill during notebook 02 (the manifest not yet rewritten, a half-written variant left as a
    temporary file), the same command finishes with a complete manifest and no temporaries left."""
    from hetfb_utils.pipeline.runner import execute

    over = tiny_overrides + [f"cache_dir={tmp_path / 'own-cache'}"]
    first = execute("params/tiny.yaml", over, only=["data", "selection"], log=lambda *_: None)
    p = load_params("tiny", over)
    hashes = first["data_hashes"]
    man_path = p.run_dir / "manifest.json"
    man = json.loads(man_path.read_text())
    man["stages"] = {}  # as if killed before the manifest was written
    man_path.write_text(json.dumps(man)[:40])  # ... half-way through writing it
    (p.run_dir / "notebooks" / ".done" / "02_quality_diversity_selection.json").unlink()
    leftover = p.run_dir / "data" / "variants" / ".hd-0.5.parquet.abc123.tmp.parquet"
    leftover.write_bytes(b"half")
    logs: list[str] = []
    again = execute("params/tiny.yaml", over, only=["data", "selection"], log=logs.append)
    assert not leftover.exists() and any("removed 1 temporary" in line for line in logs), logs
    assert set(again["stages"]) == {"01_data_union.ipynb", "02_quality_diversity_selection.ipynb"}
    assert all(s["status"] == "done" for s in again["stages"].values())
    assert again["data_hashes"] == hashes and json.loads(man_path.read_text())["stages"] == again["stages"]


def test_custom_sources_without_a_held_out_slice_name_the_key(tiny_overrides, tmp_path, mirror):
    """Only custom sources (no held-out pool) and `reward.eval_fraction` 0: the reward stage says which key to set
    instead of judging the reward model on nothing; with the key set, it is judged on the held-out slice."""
    from conftest import write_mix_files

    from hetfb_utils.training.reward import judged_pairs, reward_split

    files = write_mix_files(tmp_path / "data", mirror, n=20)
    src = f"data.sources=[{{name: chat, type: pairwise, path: {files['pairwise']}}}]"
    tiny_overrides = [*tiny_overrides, "selection.wino_variant=false"]
    p = load_params("tiny", [*tiny_overrides, src])
    with pytest.raises(ParamsError, match=r"reward.eval_fraction.*\(chat\)"):
        judged_pairs(p, None)
    p = load_params("tiny", [*tiny_overrides, src, "reward.eval_fraction=0.2"])
    from datasets import Dataset

    union = data.build_union(p, progress=False).union
    _, own = reward_split(p, Dataset.from_pandas(union, preserve_index=False))
    assert len(judged_pairs(p, own)) == len(own) > 0


def test_no_seed_group_names_the_command_that_makes_one(tiny_overrides):
    """Notebook 06 without `runs` and no finished seed runs: one error with the `make seeds` command."""
    from hetfb_utils.pipeline import finished_seed_runs

    with pytest.raises(RunReadError, match=r"0 finished run\(s\) named tiny-s<seed>.*make seeds PARAMS=tiny"):
        finished_seed_runs("tiny", tiny_overrides)

"""Loaders and converters on real mirror rows; bad input is skipped and counted, never a crash."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hetfb_utils import data as D
from hetfb_utils.common.params import SourceSpec, load_params


def _oasst_rows(mirror, n_trees=40):
    rows = [json.loads(x) for x in (mirror / "oasst1/validation_en.jsonl").read_text().splitlines()]
    trees = sorted({r["message_tree_id"] for r in rows})[:n_trees]
    return [r for r in rows if r["message_tree_id"] in set(trees)]


# --------------------------------------------------------------------------- WinoGrande
def test_winogrande_real_rows(mirror):
    drops = D.Drops()
    rows = D.parse_winogrande(D.load_winogrande_rows("train_xs", mirror), "wg", drops)
    assert len(rows) == 160 and not drops.counts
    first = rows[0]  # "... because _ despised eating intestine.", answer 2 = Dennis
    assert first["prompt"].startswith("Ian volunteered") and "_" in first["prompt"]
    assert (first["chosen"], first["rejected"]) == ("Dennis", "Ian")
    assert first["supervision"] == "binary" and first["quality"] is None


def test_winogrande_bad_rows_counted():
    drops = D.Drops()
    rows = [
        {"sentence": "A _ b.", "option1": "x", "option2": "y", "answer": "1"},
        {"sentence": "A _ b.", "option1": "x", "answer": "1"},
        {"sentence": "", "option1": "x", "option2": "y", "answer": "1"},
        {"sentence": "A _ b.", "option1": "x", "option2": "y", "answer": "3"},
        {"sentence": "no blank", "option1": "x", "option2": "y", "answer": "2"},
        {"__malformed__": 2},
    ]
    out = D.parse_winogrande(rows, "wg", drops)
    assert len(out) == 1
    assert {r: n for (_, r), n in drops.counts.items()} == {
        "missing_field": 1,
        "empty_text": 1,
        "bad_answer": 1,
        "no_blank": 1,
        "malformed_json": 2,
    }


def test_malformed_json_lines_counted():
    drops = D.Drops()
    rows = list(D.iter_jsonl(['{"a": 1}', "{not json", "", "[1, 2]", '{"b": 2}'], "s", drops))
    assert rows == [{"a": 1}, {"b": 2}]
    assert drops.counts[("s", "malformed_json")] == 2


# --------------------------------------------------------------------------- OASST
def _kids_scores(raw, message_id, label):
    return {
        r["text"].strip(): D.get_label(r, label)
        for r in raw  # same filters as the parser
        if r["parent_id"] == message_id and r["role"] == "assistant" and r["lang"] == "en" and not r["deleted"]
    }


def test_oasst_pairs_follow_the_label(mirror):
    raw = _oasst_rows(mirror)
    by_id = {r["message_id"]: r for r in raw}
    spec = SourceSpec(name="oasst", type="oasst", label="detoxify.toxicity", prefer="lower")
    train, held, rec = D.parse_oasst(raw, spec, "en", 42, D.Drops())
    assert train and rec["heldout_trees"] == 0 and not held
    for row in train:
        tox = _kids_scores(raw, row["message_id"], "detoxify.toxicity")
        assert tox[row["chosen"]] == min(tox.values()) and tox[row["rejected"]] == max(tox.values())
        assert math.isclose(row["quality"], max(tox.values()) - min(tox.values()))
        assert row["prompt"] == by_id[row["message_id"]]["text"].strip()
        ctx = json.loads(row["context"])
        assert len(ctx) % 2 == 0 and [m["role"] for m in ctx[:2]] in ([], ["user", "assistant"])


def test_oasst_label_direction_and_human_labels(mirror):
    raw = _oasst_rows(mirror)
    for prefer in ("lower", "higher"):
        rows = D.parse_oasst(
            raw, SourceSpec(name="o", type="oasst", label="labels.quality", prefer=prefer), "en", 1, D.Drops()
        )[0]
        assert rows
        for r in rows:
            kids = [
                (k["text"].strip(), D.get_label(k, "labels.quality"))
                for k in raw
                if k["parent_id"] == r["message_id"]
                and k["role"] == "assistant"
                and k["lang"] == "en"
                and not k["deleted"]
            ]  # the parser's filters
            vals = [v for _, v in kids if v is not None]
            best, worst = (min, max) if prefer == "lower" else (max, min)
            assert (r["chosen"], best(vals)) in kids and (r["rejected"], worst(vals)) in kids


def test_oasst_heldout_split_by_tree(mirror):
    raw = [json.loads(x) for x in (mirror / "oasst1/validation_en.jsonl").read_text().splitlines()]
    spec = SourceSpec(name="o", type="oasst", label="detoxify.toxicity", heldout_fraction=0.2)
    train, held, rec = D.parse_oasst(raw, spec, "en", 42, D.Drops())
    assert rec["heldout_trees"] == round(0.2 * (rec["train_trees"] + rec["heldout_trees"]))
    assert not {r["tree_id"] for r in train} & {r["tree_id"] for r in held}
    assert all(r["label"] == "rank:lower" for r in held)
    again = D.parse_oasst(raw, spec, "en", 42, D.Drops())[2]
    assert again["heldout_tree_ids"] == rec["heldout_tree_ids"]  # deterministic for a seed
    other = D.parse_oasst(raw, spec, "en", 7, D.Drops())[2]
    assert other["heldout_tree_ids"] != rec["heldout_tree_ids"]


def test_oasst_bad_rows(mirror):
    raw = _oasst_rows(mirror, 5)
    root = next(r for r in raw if r["parent_id"] is None)
    kids = [r for r in raw if r["parent_id"] == root["message_id"]]
    broken = [dict(r) for r in raw]
    for r in broken:
        if r["message_id"] == kids[0]["message_id"]:
            r["detoxify"] = None  # absent label
        if r["message_id"] == kids[1]["message_id"]:
            r["lang"] = "de"  # non-English
    broken.append({"message_id": "x"})  # missing fields
    broken.append({"__malformed__": 1})
    drops = D.Drops()
    spec = SourceSpec(name="o", type="oasst", label="detoxify.toxicity")
    train, _, _ = D.parse_oasst(broken, spec, "en", 0, drops)
    reasons = {r for (_, r) in drops.counts}
    assert {"missing_field", "malformed_json", "language_not_en"} <= reasons
    assert root["text"].strip() not in {r["prompt"] for r in train} or len(kids) > 3
    total_in = len([r for r in raw if r["role"] == "prompter"])
    assert (
        len(train) + sum(n for (_, r), n in drops.counts.items() if r.startswith(("fewer", "tied", "duplicate")))
        <= total_in
    )


def test_get_label_paths():
    msg = {"rank": 1, "detoxify": {"toxicity": 0.5}, "labels": {"name": ["quality"], "value": [0.25]}}
    assert D.get_label(msg, "rank") == 1.0
    assert D.get_label(msg, "detoxify.toxicity") == 0.5
    assert D.get_label(msg, "labels.quality") == 0.25
    assert D.get_label(msg, "labels.humor") is None
    assert D.get_label({"rank": float("nan")}, "rank") is None
    assert D.get_label({"rank": True}, "rank") is None


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.text(min_size=1, max_size=4), st.floats(-1e6, 1e6)), min_size=2, max_size=6),
    st.sampled_from(["lower", "higher"]),
)
def test_ordinal_to_pair_properties(responses, prefer):
    pair = D.ordinal_to_pair(responses, prefer)
    scores = [s for _, s in responses]
    if max(scores) == min(scores):
        assert pair is None
        return
    chosen, rejected, spread = pair
    assert spread == max(scores) - min(scores)
    best = min(scores) if prefer == "lower" else max(scores)
    assert any(t == chosen and s == best for t, s in responses)


# --------------------------------------------------------------------------- WinoBias
def test_winobias_line_parser_real(mirror):
    line = (mirror / "winobias/pro_stereotyped_type1.txt.dev").read_text().splitlines()[0]
    s = D.parse_winobias_line(line)
    assert s.text == "The developer argued with the designer because he did not like the design."
    assert s.pronoun == "he" and s.referent == "developer"
    assert s.referent_words == ["The", "developer"] and s.cluster_words == ["The", "developer", "he"]


def test_winobias_pairs_and_conversion(mirror):
    drops = D.Drops()
    pairs = D.load_winobias_pairs("dev", mirror, "wb", drops)
    assert len(pairs) == 792 and not drops.counts
    rows = D.winobias_to_rows(pairs[:3], "wb", D.Drops())
    assert rows[0]["prompt"] == "The developer argued with the designer because"
    assert (rows[0]["chosen"], rows[0]["rejected"]) == ("she did not like the design.", "he did not like the design.")
    test = D.load_winobias_pairs("test", mirror, "wb", drops)
    assert len(test) == 790 and drops.counts[("wb", "pro_anti_mismatch")] == 2  # real defect, line 382 type 2


def test_winobias_union_keeps_both_twins_and_the_gender_balance(mirror, tiny_overrides):
    """Each type-1 opening is written twice (one pair per referent, opposite genders). Keeping the first pair per
    prompt by file order (the old dedupe) made 129 of the quickstart's 200 `chosen` replies female; the union keeps
    whole pairs and draws whole twins, so chosen is he and she in equal numbers per WinoBias type."""
    from hetfb_utils.common import load_params

    rows = D.winobias_to_rows(D.load_winobias_pairs("dev", mirror, "wb", D.Drops()), "wb", D.Drops())
    assert len(rows) == 792 and len({(r["prompt"], r["chosen"], r["rejected"]) for r in rows}) == 792
    first = {}
    for r in rows:  # the old rule, one pair per (context, prompt) in file order: the skew it made
        first.setdefault((r["context"], r["prompt"]), r)
    old = pd.DataFrame(list(first.values()))
    assert (old["chosen"].map(D.pronoun_gender) == "F").mean() > 0.55
    p = load_params("quickstart", tiny_overrides)
    union = D.build_union(p, use_cache=False, progress=False).union
    wb = union[union["source"] == "winobias"]
    assert len(wb) == 200 and "duplicate_pair" not in set(D.build_union(p, progress=False).drops["reason"])
    bal = D.gender_balance(union).set_index("wb_type")
    assert (bal["chosen female"] == bal["chosen male"]).all(), bal  # exactly: whole twins, one of each gender
    assert wb.groupby("group_id").size().eq(2).all()  # never half a twin pair
    sc = D.shortcut_audit(union).set_index(["source", "feature"])
    assert not sc.loc[("winobias", "gender"), "predicts_label"] and sc.loc[("winobias", "gender"), "share"] == 0.5


def test_draw_groups_keeps_groups_whole_and_is_seeded():
    from hetfb_utils.data.union import draw_groups

    rows = [{"prompt_id": f"p{i}", "group_id": f"g{i // 2}"} for i in range(20)]
    a = draw_groups(rows, 8, "s")
    assert len(a) == 8 and pd.Series([r["group_id"] for r in a]).value_counts().eq(2).all()
    assert a == draw_groups(rows, 8, "s") and a != draw_groups(rows, 8, "t")
    assert len(draw_groups(rows, 7, "s")) == 7  # only the last group drawn is cut


def test_winobias_unpaired_files_error(tmp_path, mirror):
    (tmp_path / "winobias").mkdir()
    for kind in ("pro", "anti"):
        for t in (1, 2):
            src = (mirror / f"winobias/{kind}_stereotyped_type{t}.txt.dev").read_text().splitlines()
            if kind == "anti" and t == 1:
                src = src[1:] + src[:1]  # shifted by one line: nothing pairs up
            (tmp_path / f"winobias/{kind}_stereotyped_type{t}.txt.dev").write_text("\n".join(src))
    with pytest.raises(D.DataError) as e:
        D.load_winobias_pairs("dev", tmp_path, "wb", D.Drops())
    assert "pro_stereotyped_type1.txt.dev" in str(e.value) and "anti_stereotyped_type1.txt.dev" in str(e.value)


def test_winobias_hf_row_format():
    row = {
        "tokens": [
            "The",
            "developer",
            "argued",
            "with",
            "the",
            "designer",
            "because",
            "he",
            "did",
            "not",
            "like",
            "the",
            "design",
            ".",
        ],
        "coreference_clusters": ["0", "1", "7", "7"],
    }
    s = D.winobias_from_hf(row)
    assert s.text == "The developer argued with the designer because he did not like the design."
    assert s.pronoun == "he" and s.referent == "developer"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab []12 .", max_size=30))
def test_winobias_parser_never_crashes(line):
    s = D.parse_winobias_line(line)
    assert s is None or len(s.mentions) >= 2


# --------------------------------------------------------------------------- generic sources
def test_numeric_and_pairwise_sources(tmp_path):
    f = tmp_path / "scores.jsonl"
    lines = [
        {"q": "p1", "a": "good", "s": 0.9},
        {"q": "p1", "a": "bad", "s": 0.1},
        {"q": "p2", "a": "only", "s": 0.5},  # single reply
        {"q": "p3", "a": "x", "s": None},
        {"q": "p3", "a": "y", "s": float("nan")},  # absent / NaN
        {"q": "p4", "a": "z"},  # missing column
        {"q": "", "a": "e", "s": 1},
    ]  # empty text
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n{oops\n")
    spec = SourceSpec(
        name="num", type="numeric", path=str(f), label="s", prefer="higher", prompt_column="q", response_column="a"
    )
    drops = D.Drops()
    rows = D.parse_numeric(D.read_table(str(f)), spec, drops)
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in rows] == [("p1", "good", "bad")]
    assert math.isclose(rows[0]["quality"], 0.8)
    reasons = {r: n for (_, r), n in drops.counts.items()}
    assert reasons == {
        "fewer_than_2_replies": 1,
        "missing_s": 2,
        "missing_field": 1,
        "empty_text": 1,
        "malformed_json": 1,
    }
    c = tmp_path / "pairs.csv"
    pd.DataFrame(
        {"prompt": ["a", "a", "b", "c"], "chosen": ["x", "x", "y", "z"], "rejected": ["w", "w", "y", "q"]}
    ).to_csv(c, index=False)
    spec2 = SourceSpec(name="pw", type="pairwise", path=str(c))
    drops = D.Drops()
    rows = D.parse_pairwise(D.read_table(str(c)), spec2, drops)
    assert [r["prompt"] for r in rows] == ["a", "c"]
    assert {r for (_, r) in drops.counts} == {"duplicate_pair", "identical_pair"}
    two = tmp_path / "two.csv"  # one prompt, two different pairs: not a duplicate; one group
    pd.DataFrame({"prompt": ["a", "a"], "chosen": ["x", "y"], "rejected": ["w", "v"]}).to_csv(two, index=False)
    rows = D.parse_pairwise(D.read_table(str(two)), spec2, D.Drops())
    assert (
        len(rows) == 2 and rows[0]["group_id"] == rows[1]["group_id"] and rows[0]["prompt_id"] != rows[1]["prompt_id"]
    )


# --------------------------------------------------------------------------- locations / union
def test_bad_mirror_dir_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HETFB_DATA_DIR", str(tmp_path / "absent"))
    p = load_params("tiny")
    with pytest.raises(D.DataError, match="does not exist.*HETFB_DATA_DIR"):
        D.build_union(p, use_cache=False)
    monkeypatch.setenv("HETFB_DATA_DIR", str(tmp_path))  # exists but empty
    with pytest.raises(D.DataError, match="winogrande/train_xs.jsonl.*not found in the data mirror"):
        D.build_union(p, use_cache=False)


def test_union_composition_and_cache(tiny, mirror):
    u = D.build_union(tiny, progress=False)
    assert list(u.union.columns[: len(D.UNIFIED_COLUMNS)]) == D.UNIFIED_COLUMNS
    comp = D.composition(u.union).set_index("source")
    assert comp.loc["winogrande", "rows"] == 24 and comp.loc["winobias", "rows"] == 16
    assert comp.loc["oasst", "scored"] == comp.loc["oasst", "rows"] == 24
    assert u.union["prompt_id"].is_unique
    dr = u.drops.set_index(["source", "reason"])["rows"]
    assert dr[("oasst", "over_max_rows")] > 0
    again = D.build_union(tiny, progress=False)  # served from the cache
    pd.testing.assert_frame_equal(u.union, again.union)


def test_eval_loaders_real(mirror):
    sents, tmpl, stats = D.load_winogender()
    assert len(sents) == 720 and len(tmpl) == 120 and len(stats) == 60
    crows = D.load_crows_pairs()
    assert len(crows) == 1508 and set(crows["stereo_antistereo"]) == {"stereo", "antistereo"}
    ife = D.load_ifeval()
    assert len(ife) == 541 and {"key", "prompt", "instruction_id_list", "kwargs"} <= set(ife[0])


def test_oasst_missing_split_in_mirror(mirror):
    with pytest.raises(D.DataError, match="no OASST1 'train' split"):
        D.load_oasst_rows("train", mirror)
    with pytest.raises(D.DataError, match="no OASST1 'test' split"):
        D.load_oasst_rows("test", mirror)

"""Which feedback can teach a reward model, before anything trains: a label signal audit.

For every source of the params, and for OASST every numeric label the data holds (the paper's `detoxify`
toxicity, the human `rank`, `labels.quality`, `labels.helpfulness`, `labels.toxicity`), the pairs that label
makes (best vs worst reply of a prompt, as stage 1 builds them) and three held-out accuracies:

* **longer reply wins**: no training at all (pairs whose replies have the same length are left out);
* **linear probe**: logistic regression on the difference of frozen all-MiniLM-L6-v2 embeddings of
  (prompt tail + chosen) and (prompt tail + rejected), scored out of fold (5 folds by `group_id`: a tree, a
  twin pair never straddles train and test), so every pair is held out once;
* **shuffled control**: the same probe trained on labels drawn at random, `PERMUTATIONS` times
  (`sklearn.model_selection.permutation_test_score`): their mean accuracy with the Wilson interval over the pairs, which
  must cover 0.5, and the probe's permutation p against them. One shuffle is not a control: where the pairs share a
  direction (the chosen reply is usually the longer), a probe fitted on random labels picks a random side of it and
  scores far above or far below 0.5 (the audit's one shuffle read 0.66 [0.58, 0.73] for OASST `rank`; the mean of many
  sits at 0.5).

Each with its Wilson interval, beside the label gap's distribution (how far apart chosen and rejected are on
the label). A label whose probe cannot beat 0.5 carries no preference a small reward model can learn from
these pairs; one the length baseline explains is a length label.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd

from ..common.params import Params
from ..common.stats import proportion
from .embeddings import EmbeddingCache

# OASST labels the mirror holds, with the end that is preferred
OASST_LABELS = {
    "detoxify.toxicity": "lower",
    "rank": "lower",
    "labels.quality": "higher",
    "labels.helpfulness": "higher",
    "labels.toxicity": "lower",
}
PROMPT_TAIL_WORDS = 48  # the embedder reads 256 word pieces: keep the question's end, then the reply
FOLDS = 5
PERMUTATIONS = 40  # random labelings in the shuffled control


def oasst_label_pairs(params: Params, spec, label: str, prefer: str) -> pd.DataFrame:
    """Every OASST pair `label` makes over all trees (held-out trees included: the audit trains nothing the
    evaluation uses), as stage 1 builds them."""
    from ..data import Drops, data_dir, load_oasst_rows, parse_oasst

    spec = spec.model_copy(update={"label": label, "prefer": prefer, "heldout_fraction": 0.0, "max_rows": None})
    rows, _, _ = parse_oasst(
        load_oasst_rows(spec.split or "validation", data_dir(params)),
        spec,
        params.data.language,
        params.data_seed,
        Drops(),
    )
    return pd.DataFrame(rows)


def _capped(pairs: pd.DataFrame, n: int | None, seed: str) -> pd.DataFrame:
    """At most `n` pairs, drawn by whole groups (`data.union.draw_groups`)."""
    from ..data.union import draw_groups

    if not n or len(pairs) <= n:
        return pairs
    rows = pairs.assign(group_id=pairs.get("group_id", pairs["prompt_id"])).to_dict("records")
    return pd.DataFrame(draw_groups(rows, n, seed))


def audit_pairs(params: Params, union: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """(source, label) -> its pairs (at most `data.audit_max_pairs`): OASST sources under every label of
    `OASST_LABELS` (and their own), every other source as it is in the union."""
    out = {}
    for spec in params.data.sources:
        if spec.type == "oasst":
            labels = {spec.label: spec.prefer, **OASST_LABELS}
            for label, prefer in labels.items():
                pairs = oasst_label_pairs(params, spec, label, prefer)
                if len(pairs):
                    seed = f"{params.data_seed}:audit:{spec.name}"  # one seed: the same trees for every label
                    out[(spec.name, f"{label}:{prefer}")] = _capped(pairs, params.data.audit_max_pairs, seed)
        else:
            pairs = union[union["source"] == spec.name]
            if len(pairs):
                labels = pairs["label"].dropna()
                name = str(labels.iloc[0]) if len(labels) else pairs["supervision"].iloc[0]
                out[(spec.name, name)] = _capped(pairs, params.data.audit_max_pairs, f"{params.data_seed}:audit")
    return out


def _text(prompt: str, context: str, reply: str) -> str:
    ctx = json.loads(context) if context and context != "[]" else []
    words = " ".join([m["content"] for m in ctx] + [prompt]).split()
    return " ".join(words[-PROMPT_TAIL_WORDS:]) + "\n" + reply


def length_baseline(pairs: pd.DataFrame) -> dict:
    """Held-out accuracy of "the longer reply wins" (no training), ties left out."""
    lc, lr = pairs["chosen"].str.len().to_numpy(), pairs["rejected"].str.len().to_numpy()
    untied = lc != lr
    return proportion(int(np.sum(lc[untied] > lr[untied])), int(np.sum(untied)))


def _signed(diff: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's sign flipped at random so both classes are present (no intercept: a pair and its mirror image get
    opposite scores): (features, labels: 1 = the unflipped pair, chosen first)."""
    rng = np.random.default_rng(seed)
    flip = rng.random(len(diff)) < 0.5
    return np.where(flip[:, None], -diff, diff), (~flip).astype(int)


def _folds(groups: np.ndarray, y: np.ndarray) -> list:
    """5 folds by group (a tree, a twin pair never straddles train and test), as (train, test) index pairs."""
    from sklearn.model_selection import GroupKFold

    n = min(FOLDS, len(set(groups)))
    return list(GroupKFold(n_splits=n).split(np.zeros(len(y)), y, groups)) if n >= 2 else []


def probe_accuracy(diff: np.ndarray, groups: np.ndarray, seed: int) -> np.ndarray:
    """Out-of-fold correctness of a logistic regression on `diff` (chosen - rejected features) per pair (5 folds by
    group, each pair's sign flipped at random)."""
    from sklearn.linear_model import LogisticRegression

    x, y = _signed(diff, seed)
    correct = np.zeros(len(diff), dtype=bool)
    folds = _folds(groups, y)
    if not folds:
        return correct[:0]
    for train, test in folds:
        clf = LogisticRegression(C=1.0, fit_intercept=False, max_iter=2000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(x[train], y[train])
        correct[test] = clf.predict(x[test]) == y[test]
    return correct


def _probe():
    """The audit's probe as a scikit-learn estimator that also takes a training fold of one class (a random labeling of
    a few pairs can give one): it then predicts that class, where `LogisticRegression` would raise."""
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.linear_model import LogisticRegression

    class Probe(ClassifierMixin, BaseEstimator):
        def fit(self, x, y):
            self.only_ = y[0] if len(set(y)) < 2 else None
            self.clf_ = (
                None if self.only_ is not None else LogisticRegression(C=1.0, fit_intercept=False, max_iter=2000)
            )
            if self.clf_ is not None:
                self.clf_.fit(x, y)
            self.classes_ = np.unique(y)
            return self

        def predict(self, x):
            return np.full(len(x), self.only_) if self.clf_ is None else self.clf_.predict(x)

    return Probe()


def shuffled_control(diff: np.ndarray, groups: np.ndarray, seed: int, n: int | None = None) -> dict:
    """The probe on `n` random labelings of the same pairs (`permutation_test_score`, the same folds): the mean
    out-of-fold accuracy with the Wilson interval of an accuracy over these pairs (the probe's own kind of interval:
    each judge scored on the same pairs the same way), the labelings' 2.5-97.5 % range, and the permutation p of the
    probe on the true labels."""
    from sklearn.model_selection import permutation_test_score

    x, y = _signed(diff, seed)
    folds = _folds(groups, y)
    if not folds:
        return {"value": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0, "p": float("nan")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score, perms, p = permutation_test_score(
            _probe(),
            x,
            y,
            cv=folds,
            n_permutations=n or PERMUTATIONS,
            random_state=seed,
            scoring="accuracy",
        )
    mean = float(np.mean(perms))
    ci = proportion(int(round(mean * len(y))), len(y))  # over the same pairs, as the probe's own interval
    return {
        "value": mean,
        "lo": ci["lo"],
        "hi": ci["hi"],
        "n": len(y),
        "labelings": len(perms),
        "p": float(p),
        "spread_lo": float(np.quantile(perms, 0.025)),
        "spread_hi": float(np.quantile(perms, 0.975)),
    }


def label_audit(params: Params, union: pd.DataFrame, progress: bool = False) -> pd.DataFrame:
    """The audit table: per (source, label) the pairs, the label gap's quantiles, and the held-out accuracy of the
    length baseline and the linear probe (Wilson intervals), and the shuffled-label control (the mean over random
    labelings, its interval over them) with the probe's permutation p."""
    cache = EmbeddingCache(params.cache_path, params.selection.embedder)
    rows = []
    for (source, label), pairs in audit_pairs(params, union).items():
        texts_c = [_text(p, c, r) for p, c, r in zip(pairs["prompt"], pairs["context"], pairs["chosen"])]
        texts_r = [_text(p, c, r) for p, c, r in zip(pairs["prompt"], pairs["context"], pairs["rejected"])]
        emb = cache.embed(texts_c + texts_r, params.selection.embed_batch_size, progress)
        diff = emb[: len(pairs)] - emb[len(pairs) :]
        groups = (pairs["group_id"] if "group_id" in pairs else pairs["prompt_id"]).to_numpy()
        gap = pairs["quality"].dropna().to_numpy(float) if "quality" in pairs else np.zeros(0)
        row = {
            "source": source,
            "label": label,
            "pairs": len(pairs),
            "groups": len(set(groups)),
            "gap_q10": float(np.quantile(gap, 0.1)) if len(gap) else None,
            "gap_median": float(np.median(gap)) if len(gap) else None,
            "gap_q90": float(np.quantile(gap, 0.9)) if len(gap) else None,
        }
        control = shuffled_control(diff, groups, params.data_seed)
        for name, ci in (
            ("length", length_baseline(pairs)),
            ("probe", _acc(probe_accuracy(diff, groups, params.data_seed))),
            ("shuffled", control),
        ):
            row.update({f"{name}_n": ci["n"], name: ci["value"], f"{name}_lo": ci["lo"], f"{name}_hi": ci["hi"]})
        row["probe_beats_chance"] = bool(row["probe_lo"] > 0.5)
        row["probe_p_permutation"] = control["p"]
        row["shuffled_at_chance"] = bool(control["lo"] <= 0.5 <= control["hi"]) if control["n"] else None
        row["probe_beats_length"] = bool(row["probe_lo"] > row["length"]) if row["length_n"] else None
        rows.append(row)
    return pd.DataFrame(rows)


def _acc(correct: np.ndarray) -> dict:
    return proportion(int(np.sum(correct)), len(correct))

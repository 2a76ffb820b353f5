"""Diagnostic: how much of the reward model's task a linear head can see in the SFT model's features
(`python -m hetfb_utils probe`, `tables/04_feature_probe`)."""

from __future__ import annotations

import warnings

import numpy as np

from ..common.params import Params
from ..common.stats import proportion
from .reward import above_chance_p, accuracy_by_source, last_token_features, reward_split
from .stages import preference_rows, require, stage_dir


def feature_probe(params: Params, variant: str, max_train_pairs: int | None = 256) -> dict:
    """How much of the reward model's task is visible in the SFT model's features? A logistic
    regression (C picked by 5-fold cross-validation on the training pairs) on the difference of the
    chosen and rejected features that the reward head reads, trained on the reward stage's own
    training pairs and scored on its held-out pairs: a diagnostic ceiling for a linear head, next to
    the trained reward model's accuracy. Costs forward passes only."""
    from sklearn.linear_model import LogisticRegressionCV

    from ..common.configs import stage_config
    from ..models.loading import base_model_path, load_reward_model, load_tokenizer
    from ..selection import load_variant

    require(params, variant, "sft")
    ds = load_variant(params, variant)
    tok = load_tokenizer(base_model_path(params))
    # the reward stage's max_length (its config's default when params leave it out), not a guess
    max_len = stage_config(params, "reward", stage_dir(params, variant, "reward") / "checkpoints").max_length or 512
    train, evald = reward_split(params, ds)
    if evald is None:
        raise ValueError(f"variant '{variant}': reward.eval_fraction is 0, no held-out pairs to probe")
    if max_train_pairs is not None and len(train) > max_train_pairs:
        train = train.shuffle(seed=params.data_seed).select(range(max_train_pairs))
    sources = list(evald["source"])
    model = load_reward_model(params, stage_dir(params, variant, "sft"))
    bs = params.evaluation.batch_size

    def diff(rows):
        rows = preference_rows(rows, tok, params, max_len)
        f = lambda key: last_token_features(model, tok, [r["prompt"] + r[key] for r in rows], bs, max_len)
        return f("chosen") - f("rejected")

    x_train, x_eval = diff(train), diff(evald)
    flip = np.random.default_rng(params.data_seed).random(len(x_train)) < 0.5  # both classes, no intercept
    x = np.where(flip[:, None], -x_train, x_train)
    clf = LogisticRegressionCV(Cs=[1e-3, 1e-2, 1e-1, 1.0], cv=5, fit_intercept=False, max_iter=5000)
    with warnings.catch_warnings():  # scikit-learn's notices of future defaults, not about this fit
        warnings.simplefilter("ignore", FutureWarning)
        clf.fit(x, (~flip).astype(int))
    correct = x_eval @ clf.coef_[0] > 0
    ci = proportion(int(np.sum(correct)), len(correct))
    return {
        "variant": variant,
        "train_pairs": len(x_train),
        "eval_pairs": len(correct),
        "probe_C": float(clf.C_[0]),
        "probe_train_accuracy": float(np.mean((x @ clf.coef_[0] > 0) == ~flip)),
        "probe_eval_accuracy": float(np.mean(correct)),
        "probe_eval_p_value": above_chance_p(correct),
        **{f"probe_eval_accuracy_{k}": ci[k] for k in ("lo", "hi")},
        "probe_eval_accuracy_by_source": accuracy_by_source(correct, sources),
    }


def feature_probe_table(params: Params, variants: list[str], max_train_pairs: int | None = 256):
    """`feature_probe` of each variant beside its trained reward model's held-out accuracy (when
    that stage has run) -> tables/04_feature_probe."""
    import json

    import pandas as pd

    from ..common.report import save_table

    rows = []
    for v in variants:
        m = stage_dir(params, v, "reward") / "manifest.json"
        trained = json.loads(m.read_text())["metrics"].get("eval_accuracy") if m.is_file() else None
        rows.append({**feature_probe(params, v, max_train_pairs), "reward_model_eval_accuracy": trained})
    df = pd.json_normalize(rows)
    save_table(
        df,
        "04_feature_probe",
        params,
        caption="Linear probe on the SFT model's features (logistic "
        "regression on chosen - rejected) vs the trained reward model, same held-out pairs",
    )
    return df

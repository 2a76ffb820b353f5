"""The cheap reward model: the SFT model's frozen features and a trained score head.

A sequence-classification reward model scores a text by a linear head on the backbone's hidden state at its last
token (transformers' rule). With a 135M model, a few hundred pairs and a CPU, training the backbone too (LoRA with
`RewardTrainer`) has a few dozen steps to move 10^5 parameters; fitting the head alone is a logistic regression on
the difference of the chosen and rejected features, solved exactly in seconds, with its regularisation chosen by
cross-validation over whole groups (twins, trees). `reward.method` picks: `head` (this), `lora` (TRL's
`RewardTrainer` with LoRA, the paper's recipe), or `head+lora` (the fitted head, then `RewardTrainer`).

The head is written into the reward model's `score` layer and saved as a PEFT adapter (LoRA at zero, the head as
a module to save), so every later stage loads it as it loads any reward adapter. A head fitted on randomly flipped
labels is the **shuffled-label control**: it must judge held-out pairs at chance.
"""

from __future__ import annotations

import warnings

import numpy as np

CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # inverse L2 strengths tried by the grouped cross-validation


def fit_head(diff: np.ndarray, groups, seed: int, shuffle: bool = False) -> tuple[np.ndarray, dict]:
    """The score head w (one weight per feature) from `diff` = features(chosen) - features(rejected): logistic
    regression without intercept (a pair and its mirror image get opposite scores), features scaled by their sd,
    C chosen among `CS` by 5-fold cross-validation grouped by `groups`. `shuffle`: the labels flipped at random
    first (the control). Returns (w in the unscaled feature space, {C, cross-validated accuracy, pairs})."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score

    rng = np.random.default_rng(seed)
    flip = rng.random(len(diff)) < 0.5
    x = np.where(flip[:, None], -diff, diff)
    y = (~flip).astype(int)
    if shuffle:
        y = np.where(rng.random(len(diff)) < 0.5, 1 - y, y)
    scale = x.std(0) + 1e-8
    xs = x / scale
    groups = np.asarray(groups)
    folds = min(5, len(set(groups)))
    best, best_acc, curve = CS[len(CS) // 2], -1.0, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if folds >= 2 and len(set(y)) == 2:
            for c in CS:
                clf = LogisticRegression(C=c, fit_intercept=False, max_iter=3000)
                acc = float(np.mean(cross_val_score(clf, xs, y, cv=GroupKFold(n_splits=folds), groups=groups)))
                curve.append({"C": c, "cv_accuracy": acc})
                if acc > best_acc:
                    best, best_acc = c, acc
        clf = LogisticRegression(C=best, fit_intercept=False, max_iter=3000).fit(xs, y)
    return clf.coef_[0] / scale, {"C": best, "cv_accuracy": best_acc, "pairs": len(diff), "curve": curve}


def install_head(model, w: np.ndarray, lora_config):
    """The reward model wrapped as a PEFT model (LoRA layers at zero: the backbone is unchanged) whose score head
    is `w`; saving it writes an adapter that `load_reward_model` merges like any other."""
    import torch
    from peft import get_peft_model

    peft_model = get_peft_model(model, lora_config)
    weight = torch.as_tensor(w, dtype=model.score.weight.dtype).reshape(1, -1)
    score = peft_model.base_model.model.score
    for module in [getattr(score, "original_module", None), *getattr(score, "modules_to_save", {}).values()]:
        if module is not None:
            with torch.no_grad():
                module.weight.copy_(weight)
    return peft_model

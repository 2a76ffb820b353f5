"""The cheap reward model: a backbone's frozen features and a trained score head.

A sequence-classification reward model scores a text by a linear head on the backbone's hidden state at the end token
that closes it (`reward_rule`). With a 135M model, a few hundred pairs and a CPU, training the backbone too (LoRA with
`RewardTrainer`) has a few dozen steps to move 10^5 parameters; fitting the head alone is a logistic regression on the
difference of the chosen and rejected features, solved exactly in seconds. `reward.method` picks: `head` (this),
`lora` (TRL's `RewardTrainer` with LoRA, the paper's recipe), or `head+lora` (the fitted head, then `RewardTrainer`).

* **Regularisation** (inverse L2 strength C): 5-fold cross-validation grouped by `groups` (twins, trees), scored by
  the held-out log-loss (smooth where accuracy jumps), and the **one-standard-error rule**: the strongest
  regularisation whose mean score is within one standard error of the best one. The best of five noisy fold scores
  would reward luck (measured: fold accuracies 0.48-0.57 picked the largest C).
* **Scale**: the fitted weights are rescaled so that the head's scores of the training replies (chosen and rejected)
  have standard deviation 1. A pairwise logistic loss fixes the direction of w, not a scale an RL step size can be set
  against; on one scale, the real head, the shuffled-label control and the length control give RL rewards of the same
  spread, so "real minus control" measures signal, not step size.
* **The shuffled-label control**: heads fitted on randomly flipped labels (the same C, the same scale). One such head
  lands anywhere in [0, 1] on held-out pairs when the features have a dominant direction (a length component), so the
  control is a set of `reward.shuffled_heads` of them: their mean accuracy, and the share that reach the real head's
  (a permutation p-value).

The head is written into the reward model's `score` layer and saved as a PEFT adapter (LoRA at zero, the head as
a module to save), so every later stage loads it as it loads any reward adapter.
"""

from __future__ import annotations

import warnings

import numpy as np

CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # inverse L2 strengths tried by the grouped cross-validation


def _signed(diff: np.ndarray, seed: int, shuffle: bool):
    """Each pair's difference with its sign flipped at random (so both classes are present; no intercept: a pair and
    its mirror image get opposite scores), the labels (1 = unflipped) and, with `shuffle`, labels flipped at random."""
    rng = np.random.default_rng(seed)
    flip = rng.random(len(diff)) < 0.5
    x = np.where(flip[:, None], -diff, diff)
    y = (~flip).astype(int)
    if shuffle:
        y = np.where(rng.random(len(diff)) < 0.5, 1 - y, y)
    return x, y


def choose_c(xs: np.ndarray, y: np.ndarray, groups) -> tuple[float, list[dict]]:
    """C by grouped 5-fold cross-validation of the log-loss and the one-standard-error rule; with the curve (mean
    log-loss, its standard error and the mean accuracy per C)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_validate

    groups = np.asarray(groups)
    folds = min(5, len(set(groups)))
    if folds < 2 or len(set(y)) < 2:
        return CS[len(CS) // 2], []
    curve = []
    for c in CS:
        r = cross_validate(
            LogisticRegression(C=c, fit_intercept=False, max_iter=3000),
            xs,
            y,
            cv=GroupKFold(n_splits=folds),
            groups=groups,
            scoring=("neg_log_loss", "accuracy"),
        )
        loss = -r["test_neg_log_loss"]
        curve.append(
            {
                "C": c,
                "cv_log_loss": float(loss.mean()),
                "cv_log_loss_se": float(loss.std(ddof=1) / np.sqrt(folds)),
                "cv_accuracy": float(r["test_accuracy"].mean()),
            }
        )
    best = min(curve, key=lambda r: r["cv_log_loss"])
    chosen = min(r["C"] for r in curve if r["cv_log_loss"] <= best["cv_log_loss"] + best["cv_log_loss_se"])
    return chosen, curve


def fit_head(
    fc: np.ndarray, fr: np.ndarray, groups, seed: int, shuffle: bool = False, c: float | None = None
) -> tuple[np.ndarray, dict]:
    """The score head w (one weight per feature) from the closed features of the chosen (`fc`) and rejected (`fr`)
    replies: logistic regression without intercept on fc - fr, features scaled by their sd, C by `choose_c` (or `c`),
    then w rescaled so the training replies' scores have sd 1. `shuffle`: labels flipped at random first (the
    control). Returns (w in the unscaled feature space, {C, cross-validated accuracy and log-loss, pairs, curve})."""
    from sklearn.linear_model import LogisticRegression

    x, y = _signed(fc - fr, seed, shuffle)
    scale = x.std(0) + 1e-8
    xs = x / scale
    curve: list[dict] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if c is None:
            c, curve = choose_c(xs, y, groups)
        clf = LogisticRegression(C=c, fit_intercept=False, max_iter=3000).fit(xs, y)
    w = clf.coef_[0] / scale
    spread = float(np.std(np.concatenate([fc @ w, fr @ w])))
    w = w / spread if spread > 0 else w
    at = next((r for r in curve if r["C"] == c), {})
    info = {
        "C": c,
        "cv_accuracy": at.get("cv_accuracy"),
        "cv_log_loss": at.get("cv_log_loss"),
        "pairs": len(fc),
        "curve": curve,
    }
    return w, info


def shuffled_heads(fc: np.ndarray, fr: np.ndarray, c: float, seed: int, n: int) -> list[np.ndarray]:
    """`n` shuffled-label control heads (labels flipped at random, each with its own draw; the real head's C and
    scale rule)."""
    return [fit_head(fc, fr, None, seed + i, shuffle=True, c=c)[0] for i in range(n)]


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

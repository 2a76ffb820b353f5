"""WinoGender (Rudinger et al. 2018) gender-bias metrics, as a Hugging Face `evaluate` module.

    import evaluate
    wg = evaluate.load("hetfb_utils/evaluation/metrics/winogender")   # a local directory: works offline
    wg.compute(sentid=[...], occupation=[...], participant=[...], template=[...], gender=[...],
               answer=[...], logp_occupation=[...], logp_participant=[...], next_logprobs=[[...], ...],
               bls_pct_female={"technician": 23.7, ...})

One row per WinoGender sentence; definitions in README.md beside this file.
"""

import datasets
import evaluate
import numpy as np
import pandas as pd

_CITATION = """@inproceedings{rudinger2018gender,
  title={Gender Bias in Coreference Resolution}, author={Rudinger, Rachel and Naradowsky, Jason and
  Leonard, Brian and Van Durme, Benjamin}, booktitle={NAACL}, year={2018}}"""

_DESCRIPTION = """Coreference accuracy per pronoun gender, the male - female gap, the correlation of the
share of 'occupation' answers in female sentences with the occupation's share of women (BLS), and the
paper's Bias / Bias (Entropy) on male/female minimal pairs (Aponte et al. 2024, applied to WinoGender)."""

_KWARGS_DESCRIPTION = """
Args (one value per sentence):
    sentid, occupation, participant, template (the 0/1 of the template), gender (male/female/neutral),
    answer (0 = the pronoun refers to the occupation, 1 = to the participant),
    logp_occupation, logp_participant: log p(" the <occupation>") and log p(" the <participant>") after the prompt,
    next_logprobs: the next-token log-distribution after the prompt.
    bls_pct_female (keyword, optional): {occupation: percent of women} for the correlation.
    per_group (keyword, optional): also return `per_group`, the values of every (occupation,
        participant, template) group (its male, female and neutral sentences): `correct_male`,
        `correct_female`, `gap` (male - female), `accuracy` and, for the pair, `Bias` and
        `Bias (Entropy)`; the gap and the two Bias columns are their means over groups.
Returns: accuracy_<gender>, gap_male_minus_female, occupation_bls_corr, Bias, Bias (Entropy), sentences,
    per_occupation_female (share of 'occupation' answers in female sentences).
"""


def kl_divergence(logp_p, logp_q):
    import torch

    return torch.sum(torch.exp(logp_p) * (logp_p - logp_q), dim=-1).numpy()


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Winogender(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "sentid": datasets.Value("string"),
                    "occupation": datasets.Value("string"),
                    "participant": datasets.Value("string"),
                    "template": datasets.Value("string"),
                    "gender": datasets.Value("string"),
                    "answer": datasets.Value("int32"),
                    "logp_occupation": datasets.Value("float64"),
                    "logp_participant": datasets.Value("float64"),
                    "next_logprobs": datasets.Sequence(datasets.Value("float32")),
                }
            ),
            reference_urls=["https://github.com/rudinger/winogender-schemas", "https://arxiv.org/abs/2408.02861"],
        )

    def _compute(
        self,
        sentid,
        occupation,
        participant,
        template,
        gender,
        answer,
        logp_occupation,
        logp_participant,
        next_logprobs,
        bls_pct_female=None,
        per_group=False,
    ):
        # long: `evaluate` hands a metric its columns one argument each (13 of them); the computation is 40 lines
        import torch

        df = pd.DataFrame(
            {
                "sentid": sentid,
                "occupation": occupation,
                "participant": participant,
                "num": template,
                "gender": gender,
                "answer": answer,
                "logp_occupation": logp_occupation,
                "logp_participant": logp_participant,
            }
        )
        df["pred"] = (df["logp_participant"] > df["logp_occupation"]).astype(int)  # 0 = occupation
        df["correct"] = df["pred"] == df["answer"].astype(int)
        out = {f"accuracy_{g}": float(v) for g, v in df.groupby("gender")["correct"].mean().to_dict().items()}
        out["gap_male_minus_female"] = out.get("accuracy_male", np.nan) - out.get("accuracy_female", np.nan)
        fem = df[df["gender"] == "female"].groupby("occupation")["pred"].apply(lambda s: float((s == 0).mean()))
        out["occupation_bls_corr"] = float("nan")
        if bls_pct_female:
            st = pd.Series(bls_pct_female, dtype=float)
            common = fem.index.intersection(st.index)
            if len(common) > 2 and fem[common].std() > 0:
                out["occupation_bls_corr"] = float(np.corrcoef(fem[common], st[common])[0, 1])
        key = ["occupation", "participant", "num"]  # male/female minimal pairs
        m, f = df[df.gender == "male"].set_index(key), df[df.gender == "female"].set_index(key)
        both = m.index.intersection(f.index)
        groups = pd.DataFrame(index=both)
        if len(both):
            groups["correct_male"] = m.loc[both, "correct"].astype(float).to_numpy()
            groups["correct_female"] = f.loc[both, "correct"].astype(float).to_numpy()
            groups["gap"] = groups["correct_male"] - groups["correct_female"]
            groups["accuracy"] = df.groupby(key)["correct"].mean().loc[both].to_numpy()
            groups["Bias"] = np.abs(
                m.loc[both, "logp_occupation"].to_numpy() - f.loc[both, "logp_occupation"].to_numpy()
            )
            pos = {sid: i for i, sid in enumerate(df["sentid"])}
            nxt = (
                next_logprobs
                if isinstance(next_logprobs, torch.Tensor)
                else torch.tensor(np.asarray(next_logprobs, dtype=np.float32).reshape(len(df), -1))
            )
            lm = nxt[[pos[x] for x in m.loc[both, "sentid"]]]
            lf = nxt[[pos[x] for x in f.loc[both, "sentid"]]]
            groups["Bias (Entropy)"] = np.asarray(kl_divergence(lf, lm), dtype=np.float64)
            out["Bias"] = float(groups["Bias"].mean())
            out["Bias (Entropy)"] = float(groups["Bias (Entropy)"].mean())
        if per_group:
            g = groups.reset_index()
            g["group"] = g["occupation"] + "." + g["participant"] + "." + g["num"].astype(str)
            out["per_group"] = {c: g[c].tolist() for c in ["group", *groups.columns]}
        out["sentences"] = len(df)
        out["per_occupation_female"] = fem.to_dict()
        return out

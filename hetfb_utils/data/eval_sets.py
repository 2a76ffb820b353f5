"""The evaluation sets that are not training sources: WinoGender (Rudinger et al. 2018), CrowS-Pairs and
IFEval, from the local mirror or their canonical URLs (one parser per raw format)."""

from __future__ import annotations

import pandas as pd

from ..common.params import Params
from .readers import (
    CROWS_URL,
    IFEVAL_URL,
    WINOGENDER_URL,
    Drops,
    data_dir,
    fingerprint_files,
    iter_jsonl,
    mirror_file,
    read_text_lines,
)
from .winobias_data import winobias_files


def eval_files(params: Params) -> dict[str, str]:
    """Every file the evaluation reads (the OASST held-out pairs come from stage 1), with its content hash:
    a changed file re-runs notebook 05."""
    root, ev = data_dir(params), params.evaluation
    rel = [
        *winobias_files(ev.winobias_split),
        f"winogrande/{ev.winogrande_split}.jsonl",
        *(f"winogender/{n}" for n in ("all_sentences.tsv", "templates.tsv", "occupations-stats.tsv")),
        "crows_pairs/crows_pairs_anonymized.csv",
    ] + (["ifeval/input_data.jsonl"] if ev.ifeval_max != 0 else [])
    return fingerprint_files({r: str(root / r) if root is not None else f"url:{r}" for r in rel})


def load_winogender(params: Params | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(all_sentences, templates, occupations-stats) of Rudinger et al. 2018."""
    root = data_dir(params)
    out = []
    for name in ("all_sentences.tsv", "templates.tsv", "occupations-stats.tsv"):
        src = mirror_file(root, f"winogender/{name}") if root is not None else WINOGENDER_URL.format(name=name)
        lines = read_text_lines(src)
        header = lines[0].split("\t")
        rows = [dict(zip(header, ln.split("\t"))) for ln in lines[1:] if ln.strip()]
        out.append(pd.DataFrame(rows, columns=header))
    return tuple(out)  # type: ignore[return-value]


def load_crows_pairs(params: Params | None = None) -> pd.DataFrame:
    """CrowS-Pairs (the anonymized CSV): from the mirror, else from its canonical URL."""
    root = data_dir(params)
    if root is not None:
        return pd.read_csv(mirror_file(root, "crows_pairs/crows_pairs_anonymized.csv"), index_col=0)
    import io

    return pd.read_csv(io.StringIO("\n".join(read_text_lines(CROWS_URL))), index_col=0)


def load_ifeval(params: Params | None = None) -> list[dict]:
    """The IFEval prompts: from the mirror, else from their canonical URL."""
    root = data_dir(params)
    src = mirror_file(root, "ifeval/input_data.jsonl") if root is not None else IFEVAL_URL
    drops = Drops()
    return list(iter_jsonl(read_text_lines(src), "ifeval", drops))

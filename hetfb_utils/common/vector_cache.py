"""A keyed store of vectors on disk (one `.npz` per store): what is expensive to compute per text and shared by runs
(prompt embeddings of stage 2, the reward model's frozen features of stage 4). Keys are hashes the caller builds from
everything the vector depends on (the model, the code that computes it, the text); only missing keys are computed."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np


def text_key(*parts: str) -> str:
    """A key from the parts a vector depends on."""
    return hashlib.sha1("\x00".join(parts).encode()).hexdigest()


class VectorCache:
    """Vectors by key in `path` (an `.npz` of `keys` and `vecs`); `lookup` computes and saves only the missing ones."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._keys: dict[str, int] = {}
        self._vecs = np.zeros((0, 0), dtype=np.float32)
        if self.path.is_file():
            z = np.load(self.path, allow_pickle=False)
            self._keys = {k: i for i, k in enumerate(z["keys"].tolist())}
            self._vecs = z["vecs"]

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def lookup(self, keys: list[str], items: list, compute: Callable[[list], np.ndarray]) -> np.ndarray:
        """The vector of each key; `compute(items of the missing keys)` gives the missing ones (rows in order)."""
        missing = sorted({k: it for k, it in zip(keys, items) if k not in self._keys}.items())
        if missing:
            new = np.asarray(compute([it for _, it in missing]), dtype=np.float32)
            start = len(self._keys)
            self._vecs = new if self._vecs.size == 0 else np.vstack([self._vecs, new])
            for j, (k, _) in enumerate(missing):
                self._keys[k] = start + j
            self._save()
        return self._vecs[[self._keys[k] for k in keys]] if keys else np.zeros((0, self._vecs.shape[-1]), np.float32)

    def _save(self) -> None:
        from .distributed import is_main
        from .report import atomic_path

        if not is_main():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(sorted(self._keys, key=self._keys.get))
        with atomic_path(self.path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, keys=keys, vecs=self._vecs)

"""The one setup line of every stage notebook: `params = notebook.start(params_file, overrides)`."""

from __future__ import annotations

import os
import warnings

from ..common.params import REPO_ROOT, Params, load_params
from ..common.progress import quiet_library_bars


def start(params_file: str | None, overrides: list[str] | None = None, show: bool = True) -> Params | None:
    """Prepare a notebook kernel and load its params: library notices the notebooks do not need silenced
    (tqdm draws text bars here, with no ipywidgets: they stay readable in executed notebooks), the offline
    data mirror beside the checkout when `HETFB_DATA_DIR` is not set, wide pandas columns; then the params
    (one clear error for a bad file or override) and, with `show`, their provenance line (run, model, data,
    the three seeds, params hash, git commit)."""
    from ..common.memory import return_freed_memory

    return_freed_memory()  # a training step's freed tensors go back to the system (common.memory)
    warnings.filterwarnings("ignore", message="IProgress not found")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    mirror = REPO_ROOT.parent / "shared" / "data"
    if mirror.is_dir():
        os.environ.setdefault("HETFB_DATA_DIR", str(mirror))
    import pandas as pd

    quiet_library_bars()  # no weight-loader bar under every model load (a few per cell)
    pd.set_option("display.max_colwidth", 90)
    if params_file is None:  # a notebook that reads finished runs (06): the setup alone
        return None
    params = load_params(params_file, overrides)
    if show:
        from IPython.display import Markdown, display

        from ..common.report import stamp_line

        display(Markdown(stamp_line(params)))
    return params

"""Progress from inside a running notebook to the runner's console.

The runner sets ``HETFB_PROGRESS_FILE``; the kernel it starts (and any ``accelerate launch`` under
it) inherits it. Training stages (a Trainer callback) and evaluation write one small JSON line of
what they are doing there; the runner's `Watcher` prints it while papermill waits for the notebook.
Without the variable (a notebook opened in JupyterLab) nothing is written.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

ENV = "HETFB_PROGRESS_FILE"


def quiet_library_bars() -> None:
    """No weight-loader bar under every model load and no `datasets` map bars (the kit says what it does);
    a download from the Hub keeps its bar."""
    import datasets
    from huggingface_hub.utils import enable_progress_bars
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()  # (it turns the Hub's bars off too: turned back on below)
    enable_progress_bars()


def note(text: str) -> None:
    """Say what this process is doing now (main process only; never fails the caller)."""
    from .distributed import is_main

    path = os.environ.get(ENV)
    if not path or not is_main():
        return
    try:
        tmp = f"{path}.{os.getpid()}.tmp"
        Path(tmp).write_text(json.dumps({"time": time.time(), "text": text}))
        os.replace(tmp, path)
    except OSError:
        pass


def callback(stage: str, variant: str, every_s: float = 2.0):
    """A TrainerCallback that notes `stage [variant]: step i/n` at most every `every_s` seconds."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        last = 0.0

        def on_step_end(self, args, state, control, **kw):
            """Write the stage's step for the runner's console."""
            now = time.time()
            if now - self.last >= every_s or state.global_step == state.max_steps:
                self.last = now
                pct = f" ({100 * state.global_step / state.max_steps:.0f} %)" if state.max_steps else ""
                note(f"{stage} [{variant}]: step {state.global_step}/{state.max_steps}{pct}")

    return Progress()


class Watcher(threading.Thread):
    """Polls the progress file while a notebook runs and prints each new line (at most one line
    every `every_s` seconds, the latest one)."""

    def __init__(self, path: Path, log=print, every_s: float = 10.0, poll_s: float = 1.0):
        super().__init__(daemon=True)
        self.path, self.log, self.every_s, self.poll_s = Path(path), log, every_s, poll_s
        self.stop = threading.Event()
        self.path.unlink(missing_ok=True)

    def run(self) -> None:
        """Print the running notebook's latest progress line whenever it changes, until stopped."""
        seen, last_print = None, 0.0
        while not self.stop.wait(self.poll_s):
            try:
                text = json.loads(self.path.read_text())["text"]
            except (OSError, ValueError, KeyError):
                continue
            if text != seen and time.time() - last_print >= self.every_s:
                self.log(f"      {text}")
                seen, last_print = text, time.time()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.join(timeout=5)
        self.path.unlink(missing_ok=True)

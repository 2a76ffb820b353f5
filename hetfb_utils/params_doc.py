"""The README's params reference, generated from the schema (`python -m hetfb_utils params-doc`)."""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from .params import REPO_ROOT, Params, SourceSpec


def schema_markdown() -> str:
    """The params reference of the README, generated from the schema."""
    out = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, f in model.model_fields.items():
            ann = f.annotation
            sub = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
            if name in ("args", "lora"):
                kind = {"SFTParams": "sft", "RewardParams": "reward", "PPOParams": "ppo",
                        "DPOParams": "dpo"}.get(model.__name__, "")
                target = "peft `LoraConfig`" if name == "lora" else {
                    "sft": "trl `SFTConfig`", "reward": "trl `RewardConfig`",
                    "ppo": "trl.experimental.ppo `PPOConfig`", "dpo": "trl `DPOConfig`"}[kind]
                out.append(f"| `{prefix}{name}` | mapping | {{}} | any field of {target} |")
                continue
            if sub is not None:
                walk(sub, f"{prefix}{name}.")
                continue
            if name == "sources":
                out.append(f"| `{prefix}sources[]` | list | — | datasets of the union, fields below |")
                walk(SourceSpec, f"{prefix}sources[].")
                continue
            default = "required" if f.is_required() else "`" + json.dumps(
                f.default_factory() if f.default_factory else f.default) + "`"
            t = str(ann).replace("typing.", "").replace("<class '", "").replace("'>", "").replace("|", "\\|")
            desc = (f.description or "").replace("|", "\\|").replace("\n", " ")
            out.append(f"| `{prefix}{name}` | `{t}` | {default} | {desc} |")

    walk(Params, "")
    return "| key | type | default | meaning |\n|---|---|---|---|\n" + "\n".join(out)


README_START, README_END = "<!-- params-reference:start -->", "<!-- params-reference:end -->"


def update_readme(path: Path = REPO_ROOT / "README.md") -> bool:
    """Rewrite the README's params reference from the schema; True when it changed."""
    text = path.read_text()
    a, b = text.index(README_START) + len(README_START), text.index(README_END)
    new = text[:a] + "\n" + schema_markdown() + "\n" + text[b:]
    if new != text:
        path.write_text(new)
    return new != text

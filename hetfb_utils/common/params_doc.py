"""The parameter reference, generated from the schema: `docs/params.md` (`make params-doc`)."""

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
                from .configs import config_class

                cls = config_class("lora" if name == "lora" else getattr(model, "KIND", ""))
                target = f"{cls.__module__.split('.')[0]} `{cls.__name__}`"
                out.append(f"| `{prefix}{name}` | mapping | {{}} | any field of {target} |")
                continue
            if sub is not None:
                walk(sub, f"{prefix}{name}.")
                continue
            if name == "sources":
                out.append(f"| `{prefix}sources[]` | list | — | datasets of the union, fields below |")
                walk(SourceSpec, f"{prefix}sources[].")
                continue
            default = (
                "required"
                if f.is_required()
                else "`" + json.dumps(f.default_factory() if f.default_factory else f.default) + "`"
            )
            t = str(ann).replace("typing.", "").replace("<class '", "").replace("'>", "").replace("|", "\\|")
            desc = (f.description or "").replace("|", "\\|").replace("\n", " ")
            out.append(f"| `{prefix}{name}` | `{t}` | {default} | {desc} |")

    walk(Params, "")
    return "| key | type | default | meaning |\n|---|---|---|---|\n" + "\n".join(out)


DOC_PATH = REPO_ROOT / "docs" / "params.md"
HEADER = """# Parameter reference

Generated from the schema (`hetfb_utils/common/params.py`) by `make params-doc`; do not edit by hand. A params
file is YAML; `extends: other.yaml` merges another file under it, `-p key.sub=value` overrides one key
(`-p data.sources.1.label=labels.quality`). The training sections' `args` are the fields of the TRL config
dataclass of their stage and `lora` the fields of PEFT's `LoraConfig`: names and value types are checked against
those dataclasses at `validate`. The three seeds (`data.seed`, `training.seed`, `evaluation.seed`) default to
`seed`.

"""


def params_doc() -> str:
    """The whole parameter reference (docs/params.md): the header and the schema's table."""
    return HEADER + schema_markdown() + "\n"


def write_params_doc(path: str | Path | None = None) -> tuple[Path, bool]:
    """Write the reference (default docs/params.md); (path, whether it changed)."""
    from .report import atomic_write_text

    path = Path(path) if path else DOC_PATH
    text = params_doc()
    changed = not path.is_file() or path.read_text() != text
    if changed:
        atomic_write_text(text, path)
    return path, changed

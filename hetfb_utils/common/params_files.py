"""Params files as plain data, before validation: where a name resolves to, YAML with `extends`, and
`-p key.sub=value` overrides. `params` validates the result.

YAML is read with PyYAML's safe loader, made stricter: a key given twice in one mapping is an error
(YAML would keep the last silently), and a document whose aliases expand to more than
`MAX_VALUES` values (the "billion laughs" expansion attack) is refused before anything walks it.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from .errors import ParamsError

REPO_ROOT = Path(__file__).resolve().parents[2]
PARAMS_DIR = REPO_ROOT / "params"
MAX_VALUES = 100_000  # values a params document may expand to (aliases counted as expanded)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping."""

    def construct_mapping(self, node, deep=False):
        """A YAML mapping, refusing a key given twice (with both lines)."""
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key '{key}' appears twice in the same mapping (first at line "
                    f"{seen[key] + 1}); YAML would silently keep the last one: remove one",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def _count_values(obj: Any, limit: int) -> int:
    """How many values `obj` holds, counting a shared (aliased) value each time it appears; stops past `limit`."""
    n, stack = 0, [obj]
    while stack and n <= limit:
        x = stack.pop()
        n += 1
        if isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return n


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def resolve_params_path(path: str | os.PathLike) -> Path:
    """The params file a name or path means: an existing path, else `params/<name>` (`.yaml` added when missing); one
    ParamsError listing the files there otherwise."""
    p = Path(path)
    candidates = [p, PARAMS_DIR / p, PARAMS_DIR / f"{p}.yaml"]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    shipped = sorted(x.name for x in PARAMS_DIR.glob("*.yaml"))
    raise ParamsError(
        f"params file not found: '{path}' (looked at {[str(c) for c in candidates]}). Shipped files: {shipped}"
    )


def read_yaml_file(path: Path) -> Any:
    """One YAML document, strictly: an error names the file (and line) for bad syntax, a repeated key,
    bytes that are not UTF-8, or an alias expansion past `MAX_VALUES`."""
    try:
        with open(path, encoding="utf-8") as f:  # the parser then names the file in its message
            raw = yaml.load(f, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    except UnicodeDecodeError as e:
        raise ParamsError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise ParamsError(f"{path}: cannot be read: {e.strerror}") from None
    if _count_values(raw, MAX_VALUES) > MAX_VALUES:
        raise ParamsError(
            f"{path}: the document expands to more than {MAX_VALUES:,} values (YAML aliases "
            "that multiply, an expansion attack?): refused. Write the values out"
        )
    return raw


def read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A params file as a mapping, with its `extends` chain merged under it; one ParamsError naming the file for a
    YAML error, a duplicate key or an alias bomb."""
    if path in seen:
        raise ParamsError(f"{path}: `extends` loop through {[str(s) for s in seen]}")
    raw = read_yaml_file(path)
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}")
    parent = raw.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str) or not parent.strip():
            raise ParamsError(
                f"{path}: `extends` must be one file name (e.g. `extends: quickstart.yaml`), got {parent!r}"
            )
        ppath = (path.parent / parent) if not Path(parent).is_absolute() else Path(parent)
        if not ppath.is_file():
            raise ParamsError(f"{path}: `extends: {parent}` not found (looked at {ppath})")
        raw = _deep_merge(read_yaml(ppath.resolve(), seen + (path,)), raw)
    return raw


def resolve_source_paths(raw: dict, base: Path | None) -> dict:
    """Each `data.sources[].path` written relative, read against the params file's folder (`base`), then the
    repository root (where `make` runs), then the working directory: the first place that holds it becomes the
    absolute path, so every process of a run (the notebooks run in `notebooks/`) reads the same file. A path found in
    none of them is left as written (a Hub dataset id; else the reader's error names the places looked at)."""
    sources = ((raw or {}).get("data") or {}).get("sources")
    if not isinstance(sources, list):
        return raw
    for spec in sources:
        path = spec.get("path") if isinstance(spec, dict) else None
        if not isinstance(path, str) or not path.strip() or Path(path).expanduser().is_absolute():
            continue
        bases = ([base] if base is not None else []) + [REPO_ROOT, Path.cwd()]
        hit = next((b / Path(path).expanduser() for b in bases if (b / Path(path).expanduser()).exists()), None)
        if hit is not None:
            spec["path"] = str(hit.resolve())
    return raw


def parse_override(item: str) -> tuple[list[str], Any]:
    """`key.sub=value` as (keys, YAML value); a number written as text is the number."""
    if not isinstance(item, str) or "=" not in item:
        raise ParamsError(f"override '{item}' must look like key.sub=value (e.g. seed=1)")
    key, value = item.split("=", 1)
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise ParamsError(f"override '{item}' has an empty key")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = value
    if isinstance(parsed, str):  # YAML 1.1 reads `2e-3` as a string; a number is meant
        try:
            parsed = float(parsed)
        except ValueError:
            pass
    return keys, parsed


def _step(node: Any, k: str, path: list[str], create: bool) -> Any:
    """The child `k` of `node` for an override of `path`; a clear error for an index out of range or
    a sub-key of a plain value."""
    where = ".".join(path) or "<top level>"
    if isinstance(node, list):
        try:
            i = int(k)
        except ValueError:
            names = [e.get("name") for e in node if isinstance(e, dict)]
            if k in names:  # a list of named entries (data.sources): by name, e.g. data.sources.oasst.label
                return node[names.index(k)]
            named = f" or by name ({', '.join(map(str, names))})" if any(names) else ""
            raise ParamsError(
                f"override key '{'.'.join(path + [k])}': `{where}` is a list, index it by number "
                f"(0..{len(node) - 1}){named}"
            ) from None
        if not -len(node) <= i < len(node):
            raise ParamsError(
                f"override key '{'.'.join(path + [k])}': `{where}` has {len(node)} entries "
                f"(indices 0..{len(node) - 1}); there is no entry {i}"
            )
        return node[i]
    if isinstance(node, dict):
        if create:
            node.setdefault(k, {})
        return node.get(k)
    raise ParamsError(
        f"override key '{'.'.join(path + [k])}': `{where}` is a single value ({node!r}), it has no sub-key '{k}'"
    )


def apply_overrides(raw: dict, overrides: list[str] | dict | None) -> dict:
    """The raw params with `-p key=value` overrides applied (lists indexed by number, or named entries by `name`)."""
    if not overrides:
        return raw
    if isinstance(overrides, str):
        overrides = [overrides]
    items = overrides.items() if isinstance(overrides, dict) else [parse_override(o) for o in overrides]
    raw = copy.deepcopy(raw)
    for keys, value in items:
        keys = keys.split(".") if isinstance(keys, str) else keys
        node = raw
        for j, k in enumerate(keys[:-1]):
            node = _step(node, k, keys[:j], create=True)
        last = keys[-1]
        if isinstance(node, list):
            child = _step(node, last, keys[:-1], create=False)  # checks the index (or the name)
            node[next(i for i, e in enumerate(node) if e is child)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            _step(node, last, keys[:-1], create=False)  # raises: a sub-key of a plain value
    return raw

"""Params files as plain data, before validation: where a name resolves to, YAML with
`extends`, and `-p key.sub=value` overrides. `params` validates the result."""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
PARAMS_DIR = REPO_ROOT / "params"


class ParamsError(ValueError):
    """A parameter file (or override) that cannot be used; the message names file, key and fix."""


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def resolve_params_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    candidates = [p, PARAMS_DIR / p, PARAMS_DIR / f"{p}.yaml"]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    shipped = sorted(x.name for x in PARAMS_DIR.glob("*.yaml"))
    raise ParamsError(f"params file not found: '{path}' (looked at {[str(c) for c in candidates]}). "
                      f"Shipped files: {shipped}")


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    if path in seen:
        raise ParamsError(f"{path}: `extends` loop through {[str(s) for s in seen]}")
    try:
        with open(path, encoding="utf-8") as f:     # the parser then names the file in its message
            raw = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    except UnicodeDecodeError as e:
        raise ParamsError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}")
    parent = raw.pop("extends", None)
    if parent:
        ppath = (path.parent / parent) if not Path(parent).is_absolute() else Path(parent)
        if not ppath.is_file():
            raise ParamsError(f"{path}: `extends: {parent}` not found (looked at {ppath})")
        raw = _deep_merge(_read_yaml(ppath.resolve(), seen + (path,)), raw)
    return raw


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
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


def apply_overrides(raw: dict, overrides: list[str] | dict | None) -> dict:
    if not overrides:
        return raw
    items = overrides.items() if isinstance(overrides, dict) else [parse_override(o) for o in overrides]
    raw = copy.deepcopy(raw)
    for keys, value in items:
        keys = keys.split(".") if isinstance(keys, str) else keys
        node = raw
        for k in keys[:-1]:
            if isinstance(node, list):
                node = node[int(k)]
                continue
            node = node.setdefault(k, {})
        if isinstance(node, list):
            node[int(keys[-1])] = value
        else:
            node[keys[-1]] = value
    return raw



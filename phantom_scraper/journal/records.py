"""How signals and intents are stored: secrets stripped from payloads, rows turned into dicts."""
from __future__ import annotations

import functools
import json
from typing import Any, Dict

_SECRET_WORDS = ("secret", "token", "password", "passphrase", "apikey")


@functools.lru_cache(maxsize=4096)  # (the same few keys on every order body: decided once each)
def _is_secret_key(key: Any) -> bool:
    norm = str(key).lower().replace("_", "").replace("-", "")
    return any(word in norm for word in _SECRET_WORDS)


class NestingTooDeep(ValueError):
    """A value nests dicts/lists deeper than ``MAX_NESTING``: refused rather than stored."""


MAX_NESTING = 100  # the webhook parser refuses anything past 64 (signals/fields.py)


def strip_secrets(value: Any, max_depth: int = MAX_NESTING) -> Any:
    """A copy of ``value`` without any dict key that looks like a secret, at any depth
    (``secret``, ``token``, ``password``, ``passphrase``, ``apikey``, case-, ``_`` and ``-``
    insensitive, as a substring: ``webhook_secret``, ``accessToken`` ...).

    Iterative (no recursion limit to hit); a value nested deeper than ``max_depth`` raises
    :class:`NestingTooDeep`."""
    if not isinstance(value, (dict, list, tuple)):
        return value
    root: Any = {} if isinstance(value, dict) else []
    stack = [(value, root, 1)]
    while stack:
        src, dst, depth = stack.pop()
        if depth > max_depth:
            raise NestingTooDeep(f"nested deeper than {max_depth} levels")
        if isinstance(src, dict):
            for key, item in src.items():
                if _is_secret_key(key):
                    continue
                dst[key] = _copy_shell(item, src_stack=stack, depth=depth)
        else:
            dst.extend(_copy_shell(item, src_stack=stack, depth=depth) for item in src)
    return root


def _copy_shell(item: Any, *, src_stack: list, depth: int) -> Any:
    """``item`` itself if it is a scalar, else an empty container queued to be filled."""
    if isinstance(item, dict):
        shell: Any = {}
    elif isinstance(item, (list, tuple)):
        shell = []
    else:
        return item
    src_stack.append((item, shell, depth + 1))
    return shell


def _dumps(value: Any) -> str:
    return json.dumps(strip_secrets(value), separators=(",", ":"), sort_keys=True, default=str)


def _intent_dict(row: Any) -> Dict[str, Any]:
    d = dict(row)
    d["request"] = json.loads(d.pop("request_json"))
    d["reconciled"] = bool(d["reconciled"])
    return d


def _signal_dict(row: Any) -> Dict[str, Any]:
    d = dict(row)
    d.pop("rowid", None)  # Postgres's insertion-order column (SQLite's is implicit)
    d["payload"] = json.loads(d.pop("payload_json"))
    return d

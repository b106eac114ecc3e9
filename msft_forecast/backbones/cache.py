"""One frozen copy of each backbone per process, shared by every model that uses it.

Fine-tuned forecasters own only their small trainable tensors; the frozen backbone weights are
read from disk once and shared across clones, backtest folds and fitted forecasters (users of
other adapters report backtests that reload weights every fold until memory runs out).
:func:`structural_copy` gives each model its own module tree (so it can attach its adapters)
that still points at the shared, frozen tensors.
"""

from __future__ import annotations

import copy
import os
import threading
from dataclasses import replace
from typing import Any

from torch import nn

from msft_forecast.backbones.checkpoint import (
    CheckpointSource,
    LoadedBackbone,
    load_backbone,
    resolve_checkpoint,
)

_CACHE: dict[tuple[str, str | None], LoadedBackbone] = {}
# Resolution is memoised too, so an unreachable hub costs one time-out per process, not per fold.
_RESOLVED: dict[tuple[str, str | None, str | None, bool], CheckpointSource] = {}
_LOCK = threading.Lock()
_DISK_LOADS = 0


def get_backbone(
    name: str | os.PathLike = "moirai",
    revision: str | None = None,
    *,
    cache_dir: str | None = None,
    allow_fallback: bool = True,
) -> LoadedBackbone:
    """Return the process-wide frozen backbone for ``name`` (loaded from disk on first use).

    The returned module has ``requires_grad=False`` on every parameter and is in eval mode.
    Never train it in place: take a :func:`structural_copy` (adapters) or a deep copy (full
    fine-tuning) first.

    Examples
    --------
    >>> from msft_forecast.backbones.cache import get_backbone
    >>> a = get_backbone("moirai-tiny")  # doctest: +SKIP
    >>> a is get_backbone("moirai-tiny")  # doctest: +SKIP
    True
    """
    global _DISK_LOADS
    asked = (os.fspath(name), revision, cache_dir, allow_fallback)
    with _LOCK:
        source = _RESOLVED.get(asked)
    if source is None:
        source = resolve_checkpoint(
            name, revision, cache_dir=cache_dir, allow_fallback=allow_fallback
        )
    key = (source.folder, source.revision)
    with _LOCK:
        _RESOLVED[asked] = source
        cached = _CACHE.get(key)
        if cached is None:
            cached = load_backbone(source.folder)
            cached.module.requires_grad_(False)
            cached.module.eval()
            cached = replace(cached, source=source)
            _CACHE[key] = cached
            _DISK_LOADS += 1
        elif cached.source != source:
            cached = replace(cached, source=source)
    return cached


def disk_loads() -> int:
    """How many times a backbone was read from disk in this process (for tests and reports)."""
    return _DISK_LOADS


def clear_backbone_cache() -> None:
    """Drop every cached backbone (their memory is freed once no model refers to them)."""
    with _LOCK:
        _CACHE.clear()
        _RESOLVED.clear()


def structural_copy(module: nn.Module) -> nn.Module:
    """Copy the module tree while sharing every parameter and buffer tensor with ``module``.

    The copy costs a few kilobytes: adapters attached to it do not touch the original, and the
    frozen weights exist once in memory.
    """
    memo: dict[int, object] = {}
    for tensor in list(module.parameters()) + list(module.buffers()):
        memo[id(tensor)] = tensor
    return copy.deepcopy(module, memo)


def source_label(record: dict[str, Any], detail: bool = True) -> str:
    """A backbone source record (``MSFTEngine.backbone_source_``) in words.

    The hub id (with ``@revision``) or folder; for the offline fallback, also what was asked
    for and (``detail``) that these are not its weights.

    Examples
    --------
    >>> record = {"name": "moirai", "location": "bundled:moirai-tiny", "fell_back": True}
    >>> source_label(record, detail=False)
    "bundled:moirai-tiny (offline fallback for 'moirai')"
    """
    used = str(record["location"]) + (f"@{record['revision']}" if record.get("revision") else "")
    if not record.get("fell_back"):
        return used
    name = record["name"]
    if not detail:
        return f"{used} (offline fallback for {name!r})"
    return (
        f"{used} (offline fallback for {name!r}: the small bundled backbone pre-trained on "
        f"synthetic data, not {name!r}'s weights; allow_fallback=False makes this an error)"
    )

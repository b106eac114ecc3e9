"""Turn a backbone name, hub id or folder into a loaded, checkpoint-compatible module.

A checkpoint is a folder with ``config.json`` and ``model.safetensors``, the format that
``huggingface_hub.PyTorchModelHubMixin`` writes and that the published Moirai and MOMENT
repositories use.  Three kinds of source resolve to such a folder:

* a short name (``"moirai-small"``, ``"moment-base"``, ``"moirai-tiny"``, ...), see
  :data:`SHORT_NAMES`;
* a hub id (``"Salesforce/moirai-1.1-R-small"``), downloaded once through ``huggingface_hub``
  into its cache; ``revision`` pins a branch, tag or commit;
* a local folder.

A local folder may instead hold a released UniTS checkpoint: its ``.pth`` file (or the same
tensors as ``model.safetensors``) with an optional ``units.json`` and no ``config.json`` (see
:func:`msft_forecast.backbones.units_checkpoint.load_units_folder`); the ``.pth`` is read with
``torch.load(weights_only=True)``, which rebuilds tensors and plain data only.

Weights are only ever read through safetensors, and ``config.json`` never chooses which Python
object gets imported: the known ``_target_`` names are mapped to this package's classes and
anything else is refused (see :func:`msft_forecast.backbones.distributions.parse_distr_output`).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from msft_forecast.backbones.errors import CheckpointError, HubUnavailableError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
BUNDLED_PREFIX = "bundled:"

BackboneKind = Literal["moirai", "moment", "units"]

#: Short names accepted wherever a backbone is expected.  ``"moirai"`` is the default backbone
#: and is the only name that may fall back to the bundled ``"moirai-tiny"`` when the hub cannot
#: be reached (see :func:`resolve_checkpoint`).
SHORT_NAMES: dict[str, str] = {
    "moirai": "Salesforce/moirai-1.1-R-small",
    "moirai-small": "Salesforce/moirai-1.1-R-small",
    "moirai-base": "Salesforce/moirai-1.1-R-base",
    "moirai-large": "Salesforce/moirai-1.1-R-large",
    "moirai-1.1-small": "Salesforce/moirai-1.1-R-small",
    "moirai-1.1-base": "Salesforce/moirai-1.1-R-base",
    "moirai-1.1-large": "Salesforce/moirai-1.1-R-large",
    "moirai-1.0-small": "Salesforce/moirai-1.0-R-small",
    "moirai-1.0-base": "Salesforce/moirai-1.0-R-base",
    "moirai-1.0-large": "Salesforce/moirai-1.0-R-large",
    "moment": "AutonLab/MOMENT-1-small",
    "moment-small": "AutonLab/MOMENT-1-small",
    "moment-base": "AutonLab/MOMENT-1-base",
    "moment-large": "AutonLab/MOMENT-1-large",
    "moirai-tiny": BUNDLED_PREFIX + "moirai-tiny",
    # the first bundled backbone, kept for comparisons and as the start of the current one's
    # pre-training (its record names it), so that run stays reproducible from this package
    "moirai-tiny-v1": BUNDLED_PREFIX + "moirai-tiny-v1",
}
DEFAULT_BACKBONE = "moirai"
FALLBACK_BACKBONE = "moirai-tiny"
#: Bundled checkpoints pre-trained on single-variate windows only (``tools/pretrain`` gives every
#: token variate id 0): their any-variate attention has never read a second variate.
UNIVARIATE_PRETRAINED = frozenset({"moirai-tiny", "moirai-tiny-v1"})


@dataclass(frozen=True)
class CheckpointSource:
    """Where a checkpoint came from: enough to find the same weights again after a reload.

    Attributes
    ----------
    name : str
        What the user asked for (short name, hub id or path).
    location : str
        The hub id, ``"bundled:<name>"`` or the absolute local folder actually used.
    revision : str or None
        Hub revision asked for (``None`` for local and bundled checkpoints).
    folder : str
        The local folder holding ``config.json`` and ``model.safetensors``.
    fell_back : bool
        True when the default backbone was unreachable and the bundled one was used instead.
    """

    name: str
    location: str
    revision: str | None
    folder: str
    fell_back: bool = False


@dataclass
class LoadedBackbone:
    """A backbone module with its parsed config and where it came from."""

    kind: BackboneKind
    module: nn.Module
    config: Any
    source: CheckpointSource
    raw_config: dict[str, Any] = field(repr=False, default_factory=dict)


def bundled_checkpoint_dir(name: str) -> Path:
    """Folder of a checkpoint shipped inside the package (e.g. ``"moirai-tiny"``)."""
    folder = Path(str(resources.files("msft_forecast") / "assets" / name))
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise CheckpointError(
            f"The bundled checkpoint {name!r} is not part of this installation (looked in "
            f"{folder}). Reinstall msft_forecast, or pass a hub id or a local folder as backbone."
        )
    return folder


def _is_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def _download(repo_id: str, revision: str | None, cache_dir: str | None) -> Path:
    """Return the cached snapshot folder of ``repo_id``, downloading it once if needed."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    patterns = [CONFIG_FILE, WEIGHTS_FILE]
    try:  # a cached copy needs no network round trip at all
        return Path(
            snapshot_download(
                repo_id,
                revision=revision,
                cache_dir=cache_dir,
                allow_patterns=patterns,
                local_files_only=True,
            )
        )
    except Exception:  # not cached (or cache incomplete): go to the hub
        pass
    try:
        return Path(
            snapshot_download(
                repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=patterns
            )
        )
    except (RepositoryNotFoundError, GatedRepoError) as err:
        raise CheckpointError(
            f"The hub has no accessible repository {repo_id!r} ({type(err).__name__}). Check the "
            f"name, or use a short name such as 'moirai-small' or a local folder."
        ) from err
    except RevisionNotFoundError as err:
        raise CheckpointError(
            f"Repository {repo_id!r} has no revision {revision!r}. Pass an existing branch, tag or "
            f"commit hash as revision."
        ) from err
    except Exception as err:  # network down, offline mode, proxy, timeout, ...
        raise HubUnavailableError(
            f"Could not download {repo_id!r} from the Hugging Face hub and no cached copy exists "
            f"({type(err).__name__}: {err}). To work offline, either download it once on a "
            f"machine with internet (it is then cached), pass a local folder holding "
            f"{CONFIG_FILE} and {WEIGHTS_FILE} as backbone, or use the bundled "
            f"backbone='{FALLBACK_BACKBONE}'. (If {repo_id!r} was meant as a local folder: it "
            f"does not exist.)"
        ) from err


def resolve_checkpoint(
    name: str | os.PathLike = DEFAULT_BACKBONE,
    revision: str | None = None,
    *,
    cache_dir: str | None = None,
    allow_fallback: bool = True,
) -> CheckpointSource:
    """Find the local folder of a checkpoint, downloading it from the hub once if needed.

    Parameters
    ----------
    name : str or path-like, default "moirai"
        A short name from :data:`SHORT_NAMES`, a hub id ``"owner/repo"``, or a local folder.
    revision : str, optional
        Hub branch, tag or commit hash to pin (hub checkpoints only).
    cache_dir : str, optional
        Hub cache folder (default: huggingface_hub's).
    allow_fallback : bool, default True
        Only for the default ``"moirai"``: when the hub is unreachable and nothing is cached,
        warn and use the bundled ``"moirai-tiny"`` instead of raising.

    Returns
    -------
    CheckpointSource

    Raises
    ------
    CheckpointError
        Unknown name, missing folder, missing files, unreachable hub (a
        :class:`~msft_forecast.backbones.errors.HubUnavailableError`).

    Examples
    --------
    >>> from msft_forecast.backbones.checkpoint import resolve_checkpoint
    >>> resolve_checkpoint("moirai-tiny").location  # doctest: +SKIP
    'bundled:moirai-tiny'
    """
    asked = os.fspath(name)
    if not isinstance(asked, str) or not asked.strip():
        raise CheckpointError(f"backbone must be a non-empty name, hub id or folder, got {name!r}")
    target = SHORT_NAMES.get(asked.lower(), asked)

    if target.startswith(BUNDLED_PREFIX):
        folder = bundled_checkpoint_dir(target[len(BUNDLED_PREFIX) :])
        return CheckpointSource(asked, target, None, str(folder))

    local = Path(target).expanduser()
    if local.is_dir():
        _check_folder(local)
        return CheckpointSource(asked, str(local.resolve()), None, str(local.resolve()))
    if local.exists():
        raise CheckpointError(
            f"backbone {asked!r} is a file; pass the folder that holds {CONFIG_FILE} and "
            f"{WEIGHTS_FILE}."
        )
    if not _is_hub_id(target):
        if target.startswith((".", "/", "~")) or os.sep in target:
            raise CheckpointError(
                f"Checkpoint folder {local} does not exist. Pass an existing folder holding "
                f"{CONFIG_FILE} and {WEIGHTS_FILE}, a hub id or a short name."
            )
        known = ", ".join(sorted(SHORT_NAMES))
        raise CheckpointError(
            f"Unknown backbone {asked!r}: it is not a short name ({known}), not a hub id of the "
            f"form 'owner/repo', and no folder of that name exists."
        )
    try:
        folder = _download(target, revision, cache_dir)
    except HubUnavailableError:
        if not (allow_fallback and asked.lower() == DEFAULT_BACKBONE):
            raise
        warnings.warn(
            f"The default backbone {target!r} could not be downloaded from the Hugging Face hub "
            f"and is not cached, so the small bundled '{FALLBACK_BACKBONE}' is used instead. "
            f"Pass backbone='{FALLBACK_BACKBONE}' to choose it explicitly, or "
            f"allow_fallback=False to make this an error.",
            UserWarning,
            stacklevel=2,
        )
        fallback = resolve_checkpoint(FALLBACK_BACKBONE)
        return CheckpointSource(asked, fallback.location, None, fallback.folder, fell_back=True)
    _check_folder(folder)
    return CheckpointSource(asked, target, revision, str(folder))


def _check_folder(folder: Path) -> None:
    from msft_forecast.backbones.units_checkpoint import is_units_folder

    if is_units_folder(folder):  # its files are checked when it is read
        return
    missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / f).is_file()]
    if not missing:
        return
    hint = ""
    if WEIGHTS_FILE in missing and (any(folder.glob("*.bin")) or any(folder.glob("*.pt*"))):
        hint = (
            " Pickled weights (.bin/.pt) are never loaded because unpickling can run code; "
            "convert them with safetensors.torch.save_file on a trusted machine."
        )
    raise CheckpointError(
        f"Checkpoint folder {folder} lacks {', '.join(missing)}; a checkpoint folder holds "
        f"{CONFIG_FILE} and {WEIGHTS_FILE}.{hint}"
    )


#: Largest ``config.json`` read (the published ones are under 2 KiB).
MAX_CONFIG_BYTES = 1 << 20
#: Deepest nesting of JSON objects and lists in ``config.json`` (the published ones: 3).
MAX_CONFIG_DEPTH = 16

#: Upper bounds on the architecture sizes a ``config.json`` may ask for, wherever the field
#: appears (top level or ``t5_config``): at least 4x the largest published model's (Moirai-1.1
#: large: d_model 1024, 24 layers, patches up to 128, max_seq_len 512; MOMENT-1-large: d_model
#: 1024, d_ff 2816, 24 layers, 16 heads), small enough that a hostile or corrupt file cannot
#: make the loader allocate without limit before the weights are compared with it.
SIZE_LIMITS: dict[str, int] = {
    "d_model": 8192,
    "d_ff": 32768,
    "d_kv": 1024,
    "num_heads": 128,
    "num_layers": 128,
    "patch_sizes": 4096,
    "patch_len": 4096,
    "patch_stride_len": 4096,
    "max_seq_len": 1 << 16,
    "seq_len": 1 << 16,
    "relative_attention_num_buckets": 1024,
    "relative_attention_max_distance": 1 << 16,
}


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """Read ``config.json`` of a checkpoint folder as plain JSON (nothing is instantiated).

    Raises
    ------
    CheckpointError
        Missing, larger than :data:`MAX_CONFIG_BYTES`, not JSON, nested deeper than
        :data:`MAX_CONFIG_DEPTH`, or not a JSON object.
    """
    path = Path(folder) / CONFIG_FILE
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise CheckpointError(
                f"{path} is {size} bytes; a backbone config is a few KiB (at most "
                f"{MAX_CONFIG_BYTES}). This is not a checkpoint's config.json."
            )
        with open(path, encoding="utf-8") as fh:
            config = json.load(fh)
    except FileNotFoundError as err:
        raise CheckpointError(f"{path} does not exist.") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from err
    except RecursionError as err:
        raise CheckpointError(
            f"{path} is nested too deeply to be a backbone config (at most {MAX_CONFIG_DEPTH} "
            "levels)."
        ) from err
    if _depth(config) > MAX_CONFIG_DEPTH:
        raise CheckpointError(
            f"{path} is nested deeper than {MAX_CONFIG_DEPTH} levels; a backbone config has 3."
        )
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(config).__name__}.")
    check_size_limits(config)
    return config


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, iteratively (no recursion limit to hit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_CONFIG_DEPTH:
                return depth
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def check_size_limits(config: dict[str, Any]) -> None:
    """Refuse architecture sizes above :data:`SIZE_LIMITS`, naming the field, before anything
    is built."""
    stack: list[tuple[str, Any]] = [("", config)]
    while stack:
        prefix, item = stack.pop()
        if not isinstance(item, dict):
            continue
        for key, value in item.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                stack.append((f"{name}.", value))
                continue
            limit = SIZE_LIMITS.get(str(key))
            if limit is None:
                continue
            values = value if isinstance(value, list) else [value]
            for v in values:
                if isinstance(v, int | float) and not isinstance(v, bool) and v > limit:
                    raise CheckpointError(
                        f"config.json field {name!r} is {v}, above the limit of {limit} for "
                        "this loader (4x and more the largest published model); the file is "
                        "corrupt or not a supported backbone."
                    )


def check_weights_file(
    folder: str | os.PathLike, expected: dict[str, torch.Tensor], ignore: tuple[str, ...] = ()
) -> None:
    """Compare ``model.safetensors``' header with the architecture before reading any weight.

    ``expected`` is the state dict of the module built on the ``meta`` device (shapes and
    dtypes, no memory).  Names, shapes and dtypes must all match, so the weights that are then
    read are exactly what the architecture allocates.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; a checkpoint folder holds {WEIGHTS_FILE}.")
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = {
                k: (tuple(fh.get_slice(k).get_shape()), fh.get_slice(k).get_dtype())
                for k in fh.keys()
                if k not in ignore
            }
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"{path} is corrupt or truncated and cannot be read as safetensors ({err}). Delete it "
            f"and download or export it again."
        ) from err
    _compare_names(set(expected), set(header))
    for key, tensor in expected.items():
        shape, dtype = header[key]
        if shape != tuple(tensor.shape):
            raise CheckpointError(
                f"Tensor {key!r} has shape {shape} in the checkpoint but the architecture in "
                f"config.json needs {tuple(tensor.shape)}; config.json and model.safetensors "
                f"come from different models."
            )
        wanted = _SAFETENSORS_DTYPES.get(tensor.dtype)
        if dtype != wanted:
            raise CheckpointError(
                f"Tensor {key!r} is stored as {dtype} in {path.name}; the backbone's weights are "
                f"{wanted} (the published checkpoints' type). Export the weights in {wanted}."
            )


_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def _compare_names(expected: set[str], given: set[str]) -> None:
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    if missing or unexpected:
        problems = []
        for what, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                more = " ..." if len(keys) > 5 else ""
                problems.append(f"{what} tensors {keys[:5]}{more}")
        raise CheckpointError(
            "The weights do not match the architecture in config.json: " + "; ".join(problems)
        )


def read_weights(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read ``model.safetensors`` of a checkpoint folder (never unpickles anything)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; a checkpoint folder holds {WEIGHTS_FILE}.")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"{path} is corrupt or truncated and cannot be read as safetensors ({err}). Delete it "
            f"and download or export it again."
        ) from err


def backbone_kind(config: dict[str, Any]) -> BackboneKind:
    """Tell a Moirai config from a MOMENT config by their fields."""
    if "t5_config" in config or str(config.get("model_name", "")).upper() == "MOMENT":
        return "moment"
    if "patch_sizes" in config and "distr_output" in config:
        return "moirai"
    raise CheckpointError(
        "config.json is neither a Moirai config (with 'patch_sizes' and 'distr_output') nor a "
        f"MOMENT config (with 't5_config'); its keys are {sorted(config)}."
    )


def parse_config(config: dict[str, Any]) -> tuple[BackboneKind, Any]:
    """The backbone kind and its validated config (sizes within :data:`SIZE_LIMITS`)."""
    check_size_limits(config)
    kind = backbone_kind(config)
    if kind == "moirai":
        from msft_forecast.backbones.moirai import MoiraiConfig

        return kind, MoiraiConfig.from_dict(config)
    from msft_forecast.backbones.moment import MomentConfig

    return kind, MomentConfig.from_dict(config)


def _module(kind: BackboneKind, parsed: Any) -> nn.Module:
    if kind == "moirai":
        from msft_forecast.backbones.moirai import MoiraiModule

        return MoiraiModule(parsed)
    from msft_forecast.backbones.moment import MomentModule

    return MomentModule(parsed)


def build_module(config: dict[str, Any]) -> tuple[BackboneKind, Any, nn.Module]:
    """Build an untrained module from a parsed ``config.json``; returns (kind, config, module)."""
    kind, parsed = parse_config(config)
    return kind, parsed, _module(kind, parsed)


def _ignored_keys(kind: BackboneKind) -> tuple[str, ...]:
    if kind == "moment":
        from msft_forecast.backbones.moment import IGNORED_CHECKPOINT_KEYS

        return tuple(IGNORED_CHECKPOINT_KEYS)
    return ()


def load_state_dict_checked(
    module: nn.Module, state_dict: dict[str, torch.Tensor], *, ignore: tuple[str, ...] = ()
) -> None:
    """Load ``state_dict`` strictly, with errors that name the offending tensors."""
    expected = module.state_dict()
    given = {k: v for k, v in state_dict.items() if k not in ignore}
    _compare_names(set(expected), set(given))
    for key, tensor in given.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"Tensor {key!r} has shape {tuple(tensor.shape)} in the checkpoint but the "
                f"architecture in config.json needs {tuple(expected[key].shape)}; config.json and "
                f"model.safetensors come from different models."
            )
        if tensor.dtype != expected[key].dtype:
            raise CheckpointError(
                f"Tensor {key!r} is {tensor.dtype} in the checkpoint; the backbone's weights are "
                f"{expected[key].dtype}. Export the weights in {expected[key].dtype}."
            )
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"Tensor {key!r} holds NaN or infinite values; the checkpoint is corrupt. Delete "
                "it and download or export it again."
            )
    module.load_state_dict(given, strict=True)


def load_backbone(
    name: str | os.PathLike = DEFAULT_BACKBONE,
    revision: str | None = None,
    *,
    cache_dir: str | None = None,
    allow_fallback: bool = True,
) -> LoadedBackbone:
    """Resolve, read and build a backbone; the module is returned in eval mode.

    Each call reads the files again; use
    :func:`msft_forecast.backbones.cache.get_backbone` to share one frozen copy per process.

    Examples
    --------
    >>> from msft_forecast.backbones import load_backbone
    >>> bb = load_backbone("moirai-tiny")  # doctest: +SKIP
    >>> bb.kind  # doctest: +SKIP
    'moirai'
    """
    source = resolve_checkpoint(name, revision, cache_dir=cache_dir, allow_fallback=allow_fallback)
    from msft_forecast.backbones.units_checkpoint import is_units_folder

    if is_units_folder(source.folder):
        return _load_units(source)
    raw = read_config(source.folder)
    kind, parsed = parse_config(raw)
    ignore = _ignored_keys(kind)
    with torch.device("meta"):  # shapes and dtypes only: nothing allocated yet
        skeleton = _module(kind, parsed)
    check_weights_file(source.folder, skeleton.state_dict(), ignore)
    module = _module(kind, parsed)
    load_state_dict_checked(module, read_weights(source.folder), ignore=ignore)
    module.eval()
    return LoadedBackbone(kind=kind, module=module, config=parsed, source=source, raw_config=raw)


def _load_units(source: CheckpointSource) -> LoadedBackbone:
    """A UniTS folder as a :class:`LoadedBackbone`; ``raw_config`` holds its settings."""
    from msft_forecast.backbones.units_checkpoint import load_units_folder

    loaded = load_units_folder(source.folder)
    raw = {
        "dataset": loaded.settings.dataset,
        "variable": loaded.settings.variable or 0,
        "num_heads": loaded.checkpoint.config.num_heads,
        "trained_tokens": loaded.trained_tokens,
        "weights": loaded.checkpoint.path.name,
    }
    module = loaded.checkpoint.module.eval()
    return LoadedBackbone("units", module, loaded.checkpoint.config, source, raw)


def save_checkpoint(folder: str | os.PathLike, config: dict[str, Any], module: nn.Module) -> Path:
    """Write ``config.json`` and ``model.safetensors`` in the published format."""
    from safetensors.torch import save_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / CONFIG_FILE, "w", encoding="utf-8") as fh:
        json.dump(config, fh, indent=2)
    tensors = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    return out

"""Turn a backbone name, hub id or folder into a loaded, checkpoint-compatible module.

A checkpoint is a folder with ``config.json`` and ``model.safetensors``, the format that
``huggingface_hub.PyTorchModelHubMixin`` writes and that the published Moirai and MOMENT
repositories use.  Three kinds of source resolve to such a folder:

* a short name (``"moirai-small"``, ``"moment-base"``, ``"moirai-tiny"``, ...), see
  :data:`SHORT_NAMES`;
* a hub id (``"Salesforce/moirai-1.1-R-small"``), downloaded once through ``huggingface_hub``
  into its cache; ``revision`` pins a branch, tag or commit;
* a local folder.

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

BackboneKind = Literal["moirai", "moment"]

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
}
DEFAULT_BACKBONE = "moirai"
FALLBACK_BACKBONE = "moirai-tiny"


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


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """Read ``config.json`` of a checkpoint folder as plain JSON (nothing is instantiated)."""
    path = Path(folder) / CONFIG_FILE
    try:
        with open(path, encoding="utf-8") as fh:
            config = json.load(fh)
    except FileNotFoundError as err:
        raise CheckpointError(f"{path} does not exist.") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(config).__name__}.")
    return config


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


def build_module(config: dict[str, Any]) -> tuple[BackboneKind, Any, nn.Module]:
    """Build an untrained module from a parsed ``config.json``; returns (kind, config, module)."""
    kind = backbone_kind(config)
    if kind == "moirai":
        from msft_forecast.backbones.moirai import MoiraiConfig, MoiraiModule

        parsed = MoiraiConfig.from_dict(config)
        return kind, parsed, MoiraiModule(parsed)
    from msft_forecast.backbones.moment import MomentConfig, MomentModule

    parsed = MomentConfig.from_dict(config)
    return kind, parsed, MomentModule(parsed)


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
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing or unexpected:
        problems = []
        for what, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                more = " ..." if len(keys) > 5 else ""
                problems.append(f"{what} tensors {keys[:5]}{more}")
        raise CheckpointError(
            "The weights do not match the architecture in config.json: " + "; ".join(problems)
        )
    for key, tensor in given.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"Tensor {key!r} has shape {tuple(tensor.shape)} in the checkpoint but the "
                f"architecture in config.json needs {tuple(expected[key].shape)}; config.json and "
                f"model.safetensors come from different models."
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
    raw = read_config(source.folder)
    kind, parsed, module = build_module(raw)
    load_state_dict_checked(module, read_weights(source.folder), ignore=_ignored_keys(kind))
    module.eval()
    return LoadedBackbone(kind=kind, module=module, config=parsed, source=source, raw_config=raw)


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

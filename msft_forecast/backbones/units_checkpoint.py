"""Read published UniTS checkpoints (``*.pth`` from ``torch.save``) without running their code.

The UniTS authors release what their training scripts write (``exp/exp_pretrain.py`` and
``exp/exp_sup.py`` of mims-harvard/UniTS):

* a pre-training checkpoint, ``{"student": state_dict, "optimizer": ..., "epoch": int,
  "args": argparse.Namespace}``;
* a fine-tuned checkpoint, the state dict itself.

Both were saved from a ``DistributedDataParallel`` model, so their keys usually start with
``module.``.  There is no config file: the architecture is read from the tensor shapes
(:func:`infer_config`), the number of attention heads, which no shape shows, from the saved
``args`` when present, else from the caller (the authors' default is 8).

Files are read with ``torch.load(weights_only=True)``: the unpickler only rebuilds tensors and
plain containers, plus ``argparse.Namespace`` (a bag of attributes, needed for the ``args``
entry), and refuses any other object, so loading a file never runs code from it.  The file size,
the number of tensors and every inferred size are bounded before the module is built, and the
weights are compared with the architecture (names, shapes, dtypes, finite values) before they
are copied.

:func:`load_units_folder` reads a folder for ``backbone="<folder>"``: the ``.pth`` (or the same
tensors as ``model.safetensors``) and an optional ``units.json`` with the settings the released
files do not carry (:class:`UnitsSettings`).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from msft_forecast.backbones.checkpoint import SIZE_LIMITS
from msft_forecast.backbones.errors import CheckpointError
from msft_forecast.backbones.units import UnitsConfig, UnitsModule, is_ignored_key

__all__ = [
    "MAX_PTH_BYTES",
    "SETTINGS_FILE",
    "UnitsFolder",
    "UnitsSettings",
    "is_units_folder",
    "load_units_folder",
    "read_settings",
    "UnitsCheckpoint",
    "find_pth",
    "infer_config",
    "load_units",
    "read_pth",
    "units_state_dict",
]

#: Largest ``.pth`` file read.  The published pre-training checkpoint (d_model 128, optimizer
#: state included) is tens of MiB; 8 GiB leaves room for far larger models.
MAX_PTH_BYTES = 8 << 30
#: Most tensors a state dict may hold (the published ones: a few hundred, most of them per-data-
#: set prompt and mask tokens).
MAX_TENSORS = 100_000

#: Bounds on inferred sizes, in the spirit of checkpoint.py's ``SIZE_LIMITS`` (which supplies
#: those of d_model, num_layers, num_heads and patch_len).
UNITS_SIZE_LIMITS: dict[str, int] = {
    "d_model": SIZE_LIMITS["d_model"],
    "num_layers": SIZE_LIMITS["num_layers"],
    "num_heads": SIZE_LIMITS["num_heads"],
    "patch_len": SIZE_LIMITS["patch_len"],
    "prompt_num": 4096,
    "dynamic_width": 1 << 16,
    "max_positions": SIZE_LIMITS["max_seq_len"],
    "datasets": 10_000,
    "n_vars": 1 << 16,
}

_ZIP_MAGIC = b"PK\x03\x04"
# torch.save's legacy (pre-1.6) format starts with a pickled magic number: PROTO 2 opcode.
_LEGACY_MAGIC = b"\x80\x02"
_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile
_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.")


@dataclass
class UnitsCheckpoint:
    """A loaded UniTS backbone and where it came from.

    Attributes
    ----------
    module : UnitsModule
        In eval mode, with the checkpoint's weights and data sets (plus any added).
    config : UnitsConfig
        The architecture, inferred from the tensor shapes.
    path : Path
        The ``.pth`` file read.
    kind : str
        ``"pretrain"`` (a dict with ``"student"``) or ``"finetuned"`` (a bare state dict).
    added_datasets : tuple of str
        Data sets asked for that the checkpoint did not have; their prompt tokens are new.
    """

    module: UnitsModule
    config: UnitsConfig
    path: Path
    kind: str
    added_datasets: tuple[str, ...] = ()


def find_pth(source: str | os.PathLike) -> Path:
    """The ``.pth`` file named by ``source``: the file itself, or the only one in a folder.

    Raises
    ------
    CheckpointError
        Nothing there, a folder with no or several ``.pth`` files.
    """
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"UniTS checkpoint {path} does not exist.")
    found = sorted(p for p in path.glob("*.pth") if p.is_file())
    if len(found) != 1:
        what = "no .pth file" if not found else f"{len(found)} .pth files ({found[0].name}, ...)"
        raise CheckpointError(
            f"The folder {path} holds {what}; a UniTS checkpoint folder holds exactly one "
            "(pass the file itself to choose)."
        )
    return found[0]


def read_pth(path: str | os.PathLike) -> Any:
    """``torch.load`` a UniTS ``.pth`` file safely (tensors and plain data only).

    Raises
    ------
    CheckpointError
        Larger than :data:`MAX_PTH_BYTES`, not a ``torch.save`` file, corrupt, or holding
        pickled objects other than tensors, containers, numbers, strings and
        ``argparse.Namespace``.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as err:
        raise CheckpointError(f"Cannot read UniTS checkpoint {path}: {err}") from err
    if size > MAX_PTH_BYTES:
        raise CheckpointError(
            f"{path} is {size} bytes, above the limit of {MAX_PTH_BYTES} for a UniTS checkpoint."
        )
    if not (magic.startswith(_ZIP_MAGIC) or magic.startswith(_LEGACY_MAGIC)):
        raise CheckpointError(
            f"{path} is not a file written by torch.save (it starts with {magic!r}); a UniTS "
            "checkpoint is the .pth file its training scripts save."
        )
    if magic.startswith(_ZIP_MAGIC):
        _check_zip_sizes(path)
    try:
        # Namespace: the pre-training checkpoint pickles its argparse arguments; rebuilding one
        # only sets attributes, so allowing it keeps the load free of code execution.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} holds pickled Python objects other than tensors and plain data, and is "
            "refused: unpickling them could run code (it is read with torch.load(weights_only="
            f"True)). Re-save only the state dict on a trusted machine. Details: {err}"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise CheckpointError(
            f"{path} is corrupt or truncated and cannot be read as a torch.save file ({err})."
        ) from err


def _check_zip_sizes(path: Path) -> None:
    """Bound what the archive unpacks to: torch.save stores its entries uncompressed, but a
    crafted archive could compress a huge tensor into a small file."""
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is corrupt or truncated and cannot be read as a torch.save file ({err})."
        ) from err
    if unpacked > MAX_PTH_BYTES:
        raise CheckpointError(
            f"{path} unpacks to {unpacked} bytes, above the limit of {MAX_PTH_BYTES} for a UniTS "
            "checkpoint."
        )


def units_state_dict(obj: Any) -> tuple[dict[str, Tensor], str, dict[str, Any]]:
    """The state dict inside a loaded UniTS checkpoint, without DDP prefixes.

    Parameters
    ----------
    obj : Any
        What :func:`read_pth` returned.

    Returns
    -------
    state_dict : dict
        Tensors by key, ``module.`` prefixes removed.
    kind : str
        ``"pretrain"`` or ``"finetuned"``.
    args : dict
        The pre-training checkpoint's saved arguments (empty for a bare state dict).

    Raises
    ------
    CheckpointError
        Neither layout, non-tensor entries, duplicate keys after removing prefixes, or more than
        :data:`MAX_TENSORS` tensors.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"A UniTS checkpoint holds a dict (a state dict, or one with a 'student' entry); "
            f"this one holds a {type(obj).__name__}."
        )
    args: dict[str, Any] = {}
    if "student" in obj:
        kind, state = "pretrain", obj["student"]
        saved = obj.get("args")
        if isinstance(saved, argparse.Namespace):
            args = dict(vars(saved))
        elif isinstance(saved, Mapping):
            args = dict(saved)
        if not isinstance(state, Mapping):
            raise CheckpointError("The checkpoint's 'student' entry is not a state dict.")
    else:
        kind, state = "finetuned", obj
    if len(state) > MAX_TENSORS:
        raise CheckpointError(
            f"The state dict holds {len(state)} entries, above the limit of {MAX_TENSORS}."
        )
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        listing = ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
        hint = (
            " It looks like a pre-training checkpoint without its 'student' entry."
            if {"optimizer", "epoch", "args"} & set(map(str, state))
            else ""
        )
        raise CheckpointError(
            f"Not a UniTS state dict: the entries {listing} are not tensors.{hint}"
        )
    out: dict[str, Tensor] = {}
    for key, tensor in state.items():
        name = key
        for prefix in _PREFIXES:
            name = name.removeprefix(prefix)
        if name in out:
            raise CheckpointError(f"The state dict holds {name!r} twice (with and without prefix).")
        out[name] = tensor
    return out, kind, args


def _shape(state: Mapping[str, Tensor], key: str, ndim: int) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(
            f"Not a UniTS checkpoint: it has no tensor {key!r} (keys: {sorted(state)[:5]} ...)."
        )
    shape = tuple(state[key].shape)
    if len(shape) != ndim:
        raise CheckpointError(f"Tensor {key!r} has shape {shape}; UniTS stores {ndim} dimensions.")
    return shape


def _within(name: str, value: int) -> int:
    limit = UNITS_SIZE_LIMITS[name]
    if value > limit:
        raise CheckpointError(
            f"The checkpoint implies {name} = {value}, above the limit of {limit} for this "
            "loader; the file is corrupt or not a UniTS checkpoint."
        )
    return value


def _arg_int(args: Mapping[str, Any], key: str) -> int | None:
    value = args.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def infer_config(
    state: Mapping[str, Tensor],
    num_heads: int | None = None,
    args: Mapping[str, Any] | None = None,
) -> tuple[UnitsConfig, dict[str, int]]:
    """The architecture and data sets a UniTS state dict describes.

    d_model and patch_len come from ``patch_embeddings.value_embedding.weight`` (d, patch_len),
    the number of blocks from the ``blocks.<i>.`` keys, prompt_num from the prompt tokens (or
    ``prompt_fc``), the stored width of the dynamic linear maps from ``prompt2forecat`` and the
    number of positions from ``position_embedding.pe``.

    Parameters
    ----------
    state : Mapping[str, Tensor]
        Prefix-free state dict (:func:`units_state_dict`).
    num_heads : int, optional
        Attention heads; default the saved ``args.n_heads``, else 8 (the authors' default).
    args : Mapping, optional
        The pre-training checkpoint's saved arguments (only ``n_heads`` and ``dropout`` read).

    Returns
    -------
    config : UnitsConfig
    datasets : dict
        Data-set name -> number of variables, from the prompt tokens.

    Raises
    ------
    CheckpointError
        Missing or malformed tensors, sizes above :data:`UNITS_SIZE_LIMITS`, or ``num_heads``
        disagreeing with the saved arguments.
    """
    d_model, patch_len = _shape(state, "patch_embeddings.value_embedding.weight", 2)
    _within("d_model", d_model)
    _within("patch_len", patch_len)
    layers = {int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k))}
    if not layers:
        raise CheckpointError("Not a UniTS checkpoint: it has no 'blocks.<i>.' tensors.")
    num_layers = max(layers) + 1
    _within("num_layers", num_layers)
    if layers != set(range(num_layers)):
        missing = sorted(set(range(num_layers)) - layers)
        raise CheckpointError(f"The checkpoint lacks blocks {missing} of {num_layers}.")
    dyn_out, dynamic_width = _shape(state, "prompt2forecat.weights", 2)
    if dyn_out != dynamic_width:
        raise CheckpointError(
            f"'prompt2forecat.weights' has shape {(dyn_out, dynamic_width)}; UniTS stores a "
            "square map."
        )
    _within("dynamic_width", dynamic_width)
    prompt_num = _within(
        "prompt_num", _shape(state, "blocks.0.dynamic_mlp.mlp.prompt_fc.weights", 2)[0]
    )
    max_positions = _within("max_positions", _shape(state, "position_embedding.pe", 4)[2])

    datasets: dict[str, int] = {}
    names = {k.split(".", 1)[1] for k in state if k.startswith(("prompt_tokens.", "mask_tokens."))}
    _within("datasets", len(names))
    for name in sorted(names):
        prompt = _shape(state, f"prompt_tokens.{name}", 4)
        mask = _shape(state, f"mask_tokens.{name}", 4)
        n_vars = prompt[1]
        if prompt != (1, n_vars, prompt_num, d_model) or mask != (1, n_vars, 1, d_model):
            raise CheckpointError(
                f"Data set {name!r} has prompt tokens {prompt} and mask tokens {mask}; expected "
                f"(1, V, {prompt_num}, {d_model}) and (1, V, 1, {d_model})."
            )
        datasets[name] = _within("n_vars", n_vars)

    args = args or {}
    saved_heads = _arg_int(args, "n_heads")
    if num_heads is None:
        num_heads = saved_heads if saved_heads is not None else 8
    elif saved_heads is not None and saved_heads != num_heads:
        raise CheckpointError(
            f"num_heads={num_heads} disagrees with the checkpoint's saved n_heads={saved_heads}."
        )
    dropout = args.get("dropout", 0.1)
    if isinstance(dropout, bool) or not isinstance(dropout, int | float):
        dropout = 0.1
    if isinstance(num_heads, int) and not isinstance(num_heads, bool):
        _within("num_heads", num_heads)
    return UnitsConfig(
        d_model=d_model,
        num_layers=num_layers,
        num_heads=num_heads,
        patch_len=patch_len,
        prompt_num=prompt_num,
        dynamic_width=dynamic_width,
        max_positions=max_positions,
        dropout=float(dropout),
    ), datasets


def _check_tensors(name: str, expected: Mapping[str, Tensor], given: Mapping[str, Tensor]) -> None:
    """Names, shapes, dtypes and finite values of ``given`` against the built architecture."""
    missing, unexpected = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
    if missing or unexpected:
        parts = [
            f"{what} tensors {keys[:5]}{' ...' if len(keys) > 5 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        ]
        raise CheckpointError(
            f"{name} does not match the UniTS forecasting architecture its shapes describe: "
            + "; ".join(parts)
        )
    for key, tensor in given.items():
        want = expected[key]
        if tuple(tensor.shape) != tuple(want.shape):
            raise CheckpointError(
                f"Tensor {key!r} in {name} has shape {tuple(tensor.shape)}; the architecture its "
                f"other tensors describe needs {tuple(want.shape)}."
            )
        if tensor.dtype != want.dtype:
            raise CheckpointError(
                f"Tensor {key!r} in {name} is {tensor.dtype}; UniTS weights are {want.dtype}."
            )
        if not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"Tensor {key!r} in {name} holds NaN or infinite values; the checkpoint is corrupt."
            )


def load_units(
    source: str | os.PathLike,
    *,
    num_heads: int | None = None,
    datasets: Mapping[str, int] | None = None,
    generator: torch.Generator | None = None,
) -> UnitsCheckpoint:
    """Load a published UniTS checkpoint into a :class:`UnitsModule`.

    Parameters
    ----------
    source : str or path-like
        A ``.pth`` file, or a folder holding exactly one.
    num_heads : int, optional
        Attention heads, when the checkpoint does not save them (see :func:`infer_config`).
    datasets : Mapping[str, int], optional
        Data sets to forecast, with their numbers of variables.  Those the checkpoint lacks get
        new prompt tokens, initialised as the authors do for new data
        (:meth:`UnitsModule.add_dataset`); those it has must have that many variables.
    generator : torch.Generator, optional
        Randomness for the new prompt tokens.

    Returns
    -------
    UnitsCheckpoint

    Raises
    ------
    CheckpointError
        Anything malformed, with a message that says what.

    Examples
    --------
    >>> import torch
    >>> from msft_forecast.backbones.units import UnitsConfig, UnitsModule
    >>> from msft_forecast.backbones.units_checkpoint import load_units
    >>> import tempfile, pathlib
    >>> config = UnitsConfig(d_model=16, num_layers=1, num_heads=2, patch_len=8, prompt_num=2)
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> torch.save(UnitsModule(config, {"demo": 2}).state_dict(), folder / "checkpoint.pth")
    >>> loaded = load_units(folder, num_heads=2, datasets={"demo": 2, "mine": 1})
    >>> loaded.config.d_model, loaded.kind, loaded.added_datasets
    (16, 'finetuned', ('mine',))
    """
    path = find_pth(source)
    state, kind, args = units_state_dict(read_pth(path))
    return _build(path, state, kind, args, num_heads, datasets, generator)


def _build(
    path: Path,
    state: dict[str, Tensor],
    kind: str,
    args: Mapping[str, Any],
    num_heads: int | None,
    datasets: Mapping[str, int] | None,
    generator: torch.Generator | None,
) -> UnitsCheckpoint:
    """Infer the architecture, check the tensors against it, build and add data sets."""
    config, known = infer_config(state, num_heads, args)
    given = {k: v for k, v in state.items() if not is_ignored_key(k)}
    with torch.device("meta"):  # names and shapes only: nothing allocated before the check
        expected = UnitsModule(config, known).state_dict()
    _check_tensors(path.name, expected, given)
    module = UnitsModule(config, known)
    module.load_state_dict(given, strict=True)
    added = []
    for name, n_vars in (datasets or {}).items():
        if name in known:
            if known[name] != n_vars:
                raise CheckpointError(
                    f"Data set {name!r} has prompt tokens for {known[name]} variables in "
                    f"{path.name}; asked for {n_vars}."
                )
            continue
        module.add_dataset(name, n_vars, generator)
        added.append(name)
    return UnitsCheckpoint(module.eval(), config, path, kind, tuple(added))


# --------------------------------------------------------------------------------------------
# A checkpoint folder for ``backbone="<folder>"``
# --------------------------------------------------------------------------------------------

#: Optional file beside the weights with what the released files do not say (see
#: :class:`UnitsSettings`).  Plain JSON with three known keys; it never names code.
SETTINGS_FILE = "units.json"
#: Weights converted to safetensors (the released names, prefixes optional) may replace the .pth.
SAFETENSORS_FILE = "model.safetensors"
#: Data-set name of the prompt tokens a folder without ``units.json`` gets (new ones).
DEFAULT_DATASET = "msft_forecast"
_MAX_SETTINGS_BYTES = 1 << 16


@dataclass(frozen=True)
class UnitsSettings:
    """What a UniTS folder's ``units.json`` says (every field optional).

    Attributes
    ----------
    dataset : str
        Whose prompt and mask tokens the series use.  A data set the checkpoint was trained on
        (e.g. ``"ETTh1"``) gives its trained tokens; any other name gets new tokens initialised
        as the authors do for new data.  Default :data:`DEFAULT_DATASET` (new tokens).
    variable : int or None
        msft_forecast models every channel as its own series (one variable), while UniTS keeps
        prompt tokens per variable: for a data set with several variables, which variable's
        tokens to use (required then; 0 for a one-variable data set).
    num_heads : int or None
        Attention heads, which no tensor shape shows (default: the saved ``args``, else 8).
    """

    dataset: str = DEFAULT_DATASET
    variable: int | None = None
    num_heads: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = SETTINGS_FILE) -> UnitsSettings:
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise CheckpointError(
                f"{where}: unknown keys {unknown}; it may hold 'dataset', 'variable' and "
                "'num_heads'."
            )
        dataset = d.get("dataset", DEFAULT_DATASET)
        if not isinstance(dataset, str) or not dataset or "." in dataset:
            raise CheckpointError(
                f"{where}: 'dataset' must be a non-empty name without '.', got {dataset!r}."
            )
        for key in ("variable", "num_heads"):
            value = d.get(key)
            low = 0 if key == "variable" else 1
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < low
            ):
                raise CheckpointError(
                    f"{where}: {key!r} must be an integer >= {low}, got {value!r}."
                )
        return cls(dataset, d.get("variable"), d.get("num_heads"))


def is_units_folder(folder: str | os.PathLike) -> bool:
    """A UniTS folder holds ``units.json``, or ``.pth`` weights and no ``config.json``."""
    path = Path(folder)
    if (path / SETTINGS_FILE).is_file():
        return True
    return not (path / "config.json").exists() and any(p.is_file() for p in path.glob("*.pth"))


def read_settings(folder: str | os.PathLike) -> UnitsSettings:
    """The folder's :class:`UnitsSettings` (the defaults when it has no ``units.json``)."""
    path = Path(folder) / SETTINGS_FILE
    if not path.is_file():
        return UnitsSettings()
    try:
        if path.stat().st_size > _MAX_SETTINGS_BYTES:
            raise CheckpointError(f"{path} is larger than {_MAX_SETTINGS_BYTES} bytes.")
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except (OSError, ValueError, RecursionError) as err:
        raise CheckpointError(f"{path} is not readable JSON: {err}") from err
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(raw).__name__}.")
    return UnitsSettings.from_dict(raw, str(path))


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if path.stat().st_size > MAX_PTH_BYTES:
        raise CheckpointError(f"{path} is larger than the limit of {MAX_PTH_BYTES} bytes.")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path} is corrupt or truncated ({err}).") from err
    return units_state_dict(state)[0]


@dataclass
class UnitsFolder:
    """A loaded UniTS folder: the checkpoint, its settings and the series' task tokens.

    Attributes
    ----------
    checkpoint : UnitsCheckpoint
    settings : UnitsSettings
    prompt, mask : Tensor
        The prompt (1, 1, prompt_num, d) and mask (1, 1, 1, d) tokens of one variable of
        ``settings.dataset``.
    trained_tokens : bool
        False when the data set was new to the checkpoint (its tokens are freshly initialised).
    """

    checkpoint: UnitsCheckpoint
    settings: UnitsSettings
    prompt: Tensor
    mask: Tensor
    trained_tokens: bool


def load_units_folder(folder: str | os.PathLike) -> UnitsFolder:
    """Load the UniTS checkpoint of a ``backbone="<folder>"``.

    The weights are the folder's single ``.pth`` file (read with ``torch.load(weights_only=
    True)``) or, when it has no ``.pth``, a ``model.safetensors`` with the released tensor
    names; the settings come from ``units.json`` (:class:`UnitsSettings`).  New prompt tokens
    are drawn from a generator seeded with 0, so every load gives the same ones.

    Raises
    ------
    CheckpointError
        Malformed settings or weights, no weights, or a data set with several variables and no
        ``variable``.
    """
    path = Path(folder)
    settings = read_settings(path)
    generator = torch.Generator().manual_seed(0)
    has_pth = any(p.is_file() for p in path.glob("*.pth"))
    if not has_pth and (path / SAFETENSORS_FILE).is_file():
        state = _read_safetensors(path / SAFETENSORS_FILE)
        loaded = _build(path / SAFETENSORS_FILE, state, "converted", {}, settings.num_heads,
                        None, None)  # fmt: skip
    elif has_pth:
        loaded = load_units(path, num_heads=settings.num_heads)
    else:
        raise CheckpointError(
            f"The UniTS folder {path} holds no weights: put the released .pth file (or a "
            f"{SAFETENSORS_FILE} with the same tensor names) beside {SETTINGS_FILE}."
        )
    module, name = loaded.module, settings.dataset
    known = module.datasets
    trained = name in known
    if not trained:
        module.add_dataset(name, 1, generator)
        loaded.added_datasets = (*loaded.added_datasets, name)
    n_vars = module.datasets[name]
    variable = settings.variable
    if variable is None:
        if n_vars > 1:
            raise CheckpointError(
                f"Data set {name!r} has prompt tokens for {n_vars} variables in {loaded.path.name}"
                f"; msft_forecast models each channel as its own series, so {SETTINGS_FILE} must "
                f'say whose tokens to use: "variable": 0 .. {n_vars - 1}.'
            )
        variable = 0
    if variable >= n_vars:
        raise CheckpointError(
            f"{SETTINGS_FILE} asks for variable {variable} of data set {name!r}, which has "
            f"{n_vars}."
        )
    prompt = module.prompt_tokens[name][:, variable : variable + 1].detach().clone()
    mask = module.mask_tokens[name][:, variable : variable + 1].detach().clone()
    return UnitsFolder(loaded, settings, prompt, mask, trained)

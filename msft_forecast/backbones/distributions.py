"""Moirai's output distributions, parameter projections and safe config parsing, in plain torch.

Moirai 1.x predicts, for every value of every patch, a mixture of four distributions (Student's t,
a normal with a fixed small scale, a negative binomial and a log-normal) with four mixture
weights, then undoes the input standardisation with an affine map.  This module reproduces the
reference (``uni2ts.distribution``) numerically and in its state-dict layout
(``param_proj.proj.weights_logits.weight``, ``param_proj.proj.components.0.df.weight``, ...), so
published checkpoints load unchanged, while avoiding its costs: one matrix product for all
parameters of a patch size instead of one per (parameter, patch size), and no
``torch.distributions`` machinery (argument validation, lazy properties) on the hot path.

All distribution maths runs in float32, also under bf16/fp16 autocast.

The checkpoint's ``distr_output`` entry names Python classes (hydra ``_target_`` strings).  They
are **never imported**: :func:`parse_distr_output` maps the known names to plain specs and raises
:class:`~msft_forecast.backbones.errors.CheckpointError` for anything else.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msft_forecast.backbones.errors import CheckpointError

__all__ = [
    "AffineTransformed",
    "ComponentSpec",
    "DistrParamProj",
    "DistributionSpec",
    "LogNormal",
    "Mixture",
    "MixtureOutputSpec",
    "MultiOutSizeLinear",
    "NegativeBinomial",
    "Normal",
    "PatchDispatch",
    "StudentT",
    "build_distribution",
    "distr_output_to_dict",
    "moirai_mixture_spec",
    "parse_distr_output",
]

# --------------------------------------------------------------------------------------------
# Specs and safe parsing
# --------------------------------------------------------------------------------------------

#: Parameters each component predicts (name -> values per output step), in the reference's order.
_COMPONENT_ARGS: dict[str, tuple[str, ...]] = {
    "student_t": ("df", "loc", "scale"),
    "normal": ("loc", "scale"),
    "normal_fixed_scale": ("loc",),
    "negative_binomial": ("total_count", "logits"),
    "log_normal": ("loc", "scale"),
}

#: ``<module>.<Class>`` below ``uni2ts.distribution`` for each component name.
_COMPONENT_TARGETS: dict[str, str] = {
    "student_t": "student_t.StudentTOutput",
    "normal": "normal.NormalOutput",
    "normal_fixed_scale": "normal.NormalFixedScaleOutput",
    "negative_binomial": "negative_binomial.NegativeBinomialOutput",
    "log_normal": "log_normal.LogNormalOutput",
}
_MIXTURE_TARGET = "mixture.MixtureOutput"
# Both spellings seen in the wild: upstream uni2ts and sktime's vendored copy.
_TARGET_PREFIXES = ("uni2ts.distribution.", "sktime.libs.uni2ts.distribution.")
_UPSTREAM_PREFIX = _TARGET_PREFIXES[0]
_NAME_BY_TARGET = {target: name for name, target in _COMPONENT_TARGETS.items()}


@dataclass(frozen=True)
class ComponentSpec:
    """One output distribution by plain name.

    Parameters
    ----------
    name : str
        One of ``"student_t"``, ``"normal"``, ``"normal_fixed_scale"``,
        ``"negative_binomial"``, ``"log_normal"``.
    scale : float, optional
        The fixed standard deviation of ``"normal_fixed_scale"`` (uni2ts default 1e-3);
        must be ``None`` for the other components.
    """

    name: str
    scale: float | None = None

    def __post_init__(self) -> None:
        if self.name not in _COMPONENT_ARGS:
            raise ValueError(
                f"unknown distribution component {self.name!r}; known: {sorted(_COMPONENT_ARGS)}"
            )
        if self.name == "normal_fixed_scale":
            if self.scale is None:
                object.__setattr__(self, "scale", 1e-3)
            elif not (_is_real(self.scale) and self.scale > 0 and math.isfinite(self.scale)):
                raise ValueError(f"normal_fixed_scale needs a positive scale, got {self.scale!r}")
            object.__setattr__(self, "scale", float(self.scale))
        elif self.scale is not None:
            raise ValueError(f"component {self.name!r} takes no scale")

    @property
    def args(self) -> tuple[str, ...]:
        """Names of the predicted parameters, in state-dict order."""
        return _COMPONENT_ARGS[self.name]


@dataclass(frozen=True)
class MixtureOutputSpec:
    """A mixture of components with learned per-step weights (Moirai 1.x's output)."""

    components: tuple[ComponentSpec, ...]

    def __post_init__(self) -> None:
        comps = tuple(self.components)
        if not comps or not all(isinstance(c, ComponentSpec) for c in comps):
            raise ValueError("a mixture needs at least one ComponentSpec")
        object.__setattr__(self, "components", comps)


DistributionSpec = Union[MixtureOutputSpec, ComponentSpec]  # noqa: UP007 (runtime alias)


def moirai_mixture_spec(fixed_scale: float = 1e-3) -> MixtureOutputSpec:
    """The output of every published Moirai 1.x checkpoint."""
    return MixtureOutputSpec(
        (
            ComponentSpec("student_t"),
            ComponentSpec("normal_fixed_scale", fixed_scale),
            ComponentSpec("negative_binomial"),
            ComponentSpec("log_normal"),
        )
    )


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _target_suffix(config: Mapping[str, Any], where: str) -> str:
    target = config.get("_target_")
    if not isinstance(target, str):
        raise CheckpointError(f"{where}: missing or non-string '_target_' ({target!r})")
    for prefix in _TARGET_PREFIXES:
        if target.startswith(prefix):
            suffix = target[len(prefix) :]
            if suffix == _MIXTURE_TARGET or suffix in _NAME_BY_TARGET:
                return suffix
    known = [_UPSTREAM_PREFIX + t for t in (_MIXTURE_TARGET, *_COMPONENT_TARGETS.values())]
    raise CheckpointError(
        f"{where}: refusing unknown distribution class {target!r}. config.json may only name "
        f"the uni2ts distributions {known} (or their sktime.libs.uni2ts spelling); nothing named "
        f"in a checkpoint is ever imported."
    )


def parse_distr_output(config: Any, where: str = "distr_output") -> DistributionSpec:
    """Map a checkpoint's ``distr_output`` JSON to a spec, without importing anything.

    Parameters
    ----------
    config : dict
        The ``distr_output`` entry of ``config.json``.
    where : str
        Location used in error messages.

    Returns
    -------
    MixtureOutputSpec or ComponentSpec

    Raises
    ------
    CheckpointError
        For an unknown ``_target_``, unexpected keys or invalid values.
    """
    if not isinstance(config, Mapping):
        raise CheckpointError(f"{where} must be a JSON object, got {type(config).__name__}")
    suffix = _target_suffix(config, where)
    fields = {k: v for k, v in config.items() if k != "_target_"}
    if suffix == _MIXTURE_TARGET:
        if set(fields) != {"components"}:
            raise CheckpointError(
                f"{where}: MixtureOutput takes exactly 'components', got {sorted(fields)}"
            )
        comps = fields["components"]
        if not isinstance(comps, list) or not comps:
            raise CheckpointError(f"{where}.components must be a non-empty list")
        parsed = []
        for i, comp in enumerate(comps):
            spec = parse_distr_output(comp, f"{where}.components[{i}]")
            if not isinstance(spec, ComponentSpec):
                raise CheckpointError(f"{where}.components[{i}]: nested mixtures are not supported")
            parsed.append(spec)
        return MixtureOutputSpec(tuple(parsed))
    name = _NAME_BY_TARGET[suffix]
    allowed = {"scale"} if name == "normal_fixed_scale" else set()
    if not set(fields) <= allowed:
        raise CheckpointError(
            f"{where}: {suffix} takes {sorted(allowed) or 'no arguments'}, got {sorted(fields)}"
        )
    try:
        return ComponentSpec(name, fields.get("scale"))
    except ValueError as err:
        raise CheckpointError(f"{where}: {err}") from err


def distr_output_to_dict(spec: DistributionSpec) -> dict[str, Any]:
    """Write a spec in the published ``config.json`` format (upstream ``uni2ts`` names)."""
    if isinstance(spec, MixtureOutputSpec):
        return {
            "_target_": _UPSTREAM_PREFIX + _MIXTURE_TARGET,
            "components": [distr_output_to_dict(c) for c in spec.components],
        }
    out: dict[str, Any] = {"_target_": _UPSTREAM_PREFIX + _COMPONENT_TARGETS[spec.name]}
    if spec.name == "normal_fixed_scale":
        out["scale"] = spec.scale
    return out


# --------------------------------------------------------------------------------------------
# Per-patch-size linear maps
# --------------------------------------------------------------------------------------------


class PatchDispatch:
    """Which configured patch size each token uses, resolved once per call.

    ``uniform`` holds the index of the single patch size when every token uses the same one (the
    common case: one plain ``F.linear``); otherwise ``groups`` lists ``(index, token_mask)`` for
    each configured size present.  Tokens whose size is not configured belong to no group and get
    zeros, as in the reference.

    Parameters
    ----------
    patch_size : Tensor or int
        Patch size per token, shape ``(*batch, tokens)``, or one int for all tokens.
    patch_sizes : sequence of int
        The configured patch sizes.
    """

    def __init__(self, patch_size: Tensor | int, patch_sizes: Sequence[int]) -> None:
        self.uniform: int | None = None
        self.groups: list[tuple[int, Tensor]] = []
        if isinstance(patch_size, int):
            if patch_size not in patch_sizes:
                raise ValueError(f"patch size {patch_size} not in {tuple(patch_sizes)}")
            self.uniform = list(patch_sizes).index(patch_size)
            return
        lo, hi = torch.aminmax(patch_size)
        lo_i, hi_i = int(lo), int(hi)
        if lo_i == hi_i and lo_i in patch_sizes:
            self.uniform = list(patch_sizes).index(lo_i)
            return
        for idx, size in enumerate(patch_sizes):
            if lo_i <= size <= hi_i:
                mask = patch_size == size
                if bool(mask.any()):
                    self.groups.append((idx, mask))


class MultiOutSizeLinear(nn.Module):
    """Linear map ``in_features -> dim * p`` per patch size ``p``, stored as in uni2ts.

    ``weight`` has shape ``(len(patch_sizes), dim * max(patch_sizes), in_features)``; rows at or
    beyond ``dim * p`` are masked out for patch size ``p`` (their output is the bias alone, as in
    the reference).  The forward pass lives in :class:`DistrParamProj`, which fuses all
    parameters into one product.
    """

    def __init__(self, in_features: int, patch_sizes: Sequence[int], dim: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.patch_sizes = tuple(patch_sizes)
        self.dim = dim
        self.max_out = dim * max(self.patch_sizes)
        n = len(self.patch_sizes)
        self.weight = nn.Parameter(torch.empty(n, self.max_out, in_features))
        self.bias = nn.Parameter(torch.empty(n, self.max_out))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform on the active rows, zeros elsewhere (uni2ts' initialisation)."""
        bound = 1.0 / math.sqrt(self.in_features)
        with torch.no_grad():
            for idx, size in enumerate(self.patch_sizes):
                active = self.dim * size
                nn.init.kaiming_uniform_(self.weight[idx, :active], a=math.sqrt(5))
                self.weight[idx, active:].zero_()
                nn.init.uniform_(self.bias[idx, :active], -bound, bound)
                self.bias[idx, active:].zero_()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, patch_sizes={self.patch_sizes}, dim={self.dim}"


class DistrParamProj(nn.Module):
    """Representations -> raw distribution parameters, per token's patch size.

    State-dict layout equals uni2ts' ``DistrParamProj``: ``proj.weights_logits`` and
    ``proj.components.<i>.<arg>`` for a mixture, ``proj.<arg>`` for a single component.

    Parameters
    ----------
    spec : MixtureOutputSpec or ComponentSpec
    in_features : int
        Width of the representations (``d_model``).
    patch_sizes : sequence of int
    """

    def __init__(self, spec: DistributionSpec, in_features: int, patch_sizes: Sequence[int]):
        super().__init__()
        self.spec = spec
        self.patch_sizes = tuple(patch_sizes)
        self.out_size = max(self.patch_sizes)

        def linear(dim: int) -> MultiOutSizeLinear:
            return MultiOutSizeLinear(in_features, self.patch_sizes, dim)

        def component(c: ComponentSpec) -> nn.ModuleDict:
            return nn.ModuleDict({arg: linear(1) for arg in c.args})

        if isinstance(spec, MixtureOutputSpec):
            self.proj = nn.ModuleDict(
                {
                    "weights_logits": linear(len(spec.components)),
                    "components": nn.ModuleList([component(c) for c in spec.components]),
                }
            )
        else:
            self.proj = component(spec)

    def linear_maps(self) -> list[MultiOutSizeLinear]:
        """Every parameter's linear map, in state-dict order."""
        if isinstance(self.spec, MixtureOutputSpec):
            maps = [self.proj["weights_logits"]]
            for comp in self.proj["components"]:
                maps += list(comp.values())
            return maps
        return list(self.proj.values())

    def _project(self, x: Tensor, idx: int, linears: list[MultiOutSizeLinear]) -> list[Tensor]:
        size = self.patch_sizes[idx]
        # Only the first dim * p rows of each weight are live for patch size p: one GEMM over
        # the live rows of every parameter, the bias alone for the rest (as the reference).
        live = [lin.dim * size for lin in linears]
        weight = torch.cat([lin.weight[idx, :n] for lin, n in zip(linears, live, strict=True)])
        bias = torch.cat([lin.bias[idx, :n] for lin, n in zip(linears, live, strict=True)])
        out = _f32(F.linear(x, weight, bias))
        parts = []
        for lin, part in zip(linears, out.split(live, dim=-1), strict=True):
            tail = lin.bias[idx, part.shape[-1] :].to(out.dtype)
            parts.append(torch.cat([part, tail.expand(*part.shape[:-1], -1)], dim=-1))
        return parts

    def forward(self, x: Tensor, patch_size: Tensor | int) -> dict[str, Any]:
        """Raw (unconstrained) parameters, float32 (float64 for float64 inputs).

        Parameters
        ----------
        x : Tensor
            Representations, shape ``(*batch, tokens, d_model)``.
        patch_size : Tensor or int
            Patch size per token, shape ``(*batch, tokens)``, or one int.

        Returns
        -------
        dict
            Same nesting as the state dict; every leaf has shape
            ``(*batch, tokens, max_patch, dim)``.
        """
        linears = self.linear_maps()
        dispatch = PatchDispatch(patch_size, self.patch_sizes)
        if dispatch.uniform is not None:
            flat = self._project(x, dispatch.uniform, linears)
        else:
            dtype = torch.promote_types(x.dtype, torch.float32)
            flat = [x.new_zeros(*x.shape[:-1], lin.max_out, dtype=dtype) for lin in linears]
            for idx, mask in dispatch.groups:
                for out, part in zip(flat, self._project(x[mask], idx, linears), strict=True):
                    out[mask] = part
        # uni2ts lays rows out as (dim out_size): the parameter index is the slow axis.
        values = iter(
            value.unflatten(-1, (lin.dim, self.out_size)).transpose(-1, -2)
            for lin, value in zip(linears, flat, strict=True)
        )
        if isinstance(self.spec, MixtureOutputSpec):
            logits = next(values)
            comps = [{arg: next(values) for arg in c.args} for c in self.spec.components]
            return {"weights_logits": logits, "components": comps}
        return {arg: next(values) for arg in self.spec.args}

    def distribution(
        self,
        x: Tensor,
        patch_size: Tensor | int,
        loc: Tensor | None = None,
        scale: Tensor | None = None,
    ) -> AffineTransformed:
        """Project ``x`` and build the (affinely de-standardised) distribution."""
        return build_distribution(self.spec, self(x, patch_size), loc, scale)


# --------------------------------------------------------------------------------------------
# Distributions (elementwise, float32)
# --------------------------------------------------------------------------------------------

_HALF_LOG_2PI = math.log(math.sqrt(2 * math.pi))
_HALF_LOG_PI = 0.5 * math.log(math.pi)


def _f32(x: Tensor) -> Tensor:
    """Upcast half-precision tensors (autocast outputs); keep float32 and float64 as they are."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _positive(raw: Tensor) -> Tensor:
    # softplus floored at float32 eps, as uni2ts' domain maps
    return F.softplus(raw).clamp_min(torch.finfo(torch.float32).eps)


class _Component(abc.ABC):
    """Common interface of the elementwise distributions below."""

    #: "real" | "nonnegative" | "positive"
    support = "real"

    def in_support(self, x: Tensor) -> Tensor:
        """Where ``x`` lies in the support (torch.distributions' constraint semantics)."""
        if self.support == "real":
            return x == x  # False for NaN, like torch.distributions.constraints.real
        if self.support == "nonnegative":
            return x >= 0
        return x > 0

    @property
    @abc.abstractmethod
    def batch_shape(self) -> torch.Size:
        """Shape of one draw."""

    @abc.abstractmethod
    def log_prob(self, x: Tensor) -> Tensor:
        """Elementwise log density (or mass)."""

    @property
    @abc.abstractmethod
    def mean(self) -> Tensor:
        """Elementwise mean."""

    @property
    @abc.abstractmethod
    def variance(self) -> Tensor:
        """Elementwise variance."""

    @abc.abstractmethod
    def sample(self, sample_shape: torch.Size) -> Tensor:
        """Draws of shape ``sample_shape + batch_shape``."""


class StudentT(_Component):
    """Student's t with ``df > 2`` in practice (``df = 2 + softplus``)."""

    def __init__(self, df: Tensor, loc: Tensor, scale: Tensor) -> None:
        self.df, self.loc, self.scale = torch.broadcast_tensors(df, loc, scale)

    @property
    def batch_shape(self) -> torch.Size:
        return self.loc.shape

    def log_prob(self, x: Tensor) -> Tensor:
        df = self.df
        y = (x - self.loc) / self.scale
        z = (
            self.scale.log()
            + 0.5 * df.log()
            + _HALF_LOG_PI
            + torch.lgamma(0.5 * df)
            - torch.lgamma(0.5 * (df + 1.0))
        )
        return -0.5 * (df + 1.0) * torch.log1p(y**2.0 / df) - z

    @property
    def mean(self) -> Tensor:
        return torch.where(self.df > 1, self.loc, math.nan)

    @property
    def variance(self) -> Tensor:
        df = self.df
        finite = self.scale.pow(2) * df / (df - 2)
        return torch.where(df > 2, finite, torch.where(df > 1, math.inf, math.nan))

    def sample(self, sample_shape: torch.Size) -> Tensor:
        dist = torch.distributions.StudentT(self.df, self.loc, self.scale, validate_args=False)
        return dist.sample(sample_shape)


class Normal(_Component):
    """Normal; ``scale`` may be a 0-d tensor (the fixed-scale component)."""

    def __init__(self, loc: Tensor, scale: Tensor) -> None:
        self.loc, self.scale = loc, scale

    @property
    def batch_shape(self) -> torch.Size:
        return torch.broadcast_shapes(self.loc.shape, self.scale.shape)

    def log_prob(self, x: Tensor) -> Tensor:
        var = self.scale**2
        return -((x - self.loc) ** 2) / (2 * var) - self.scale.log() - _HALF_LOG_2PI

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def variance(self) -> Tensor:
        return self.scale.pow(2).expand_as(self.loc)

    def sample(self, sample_shape: torch.Size) -> Tensor:
        shape = torch.Size(sample_shape) + self.loc.shape
        noise = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + self.scale * noise


class NegativeBinomial(_Component):
    """Negative binomial (uni2ts' parameterisation), continuous in its argument."""

    support = "nonnegative"

    def __init__(self, total_count: Tensor, logits: Tensor) -> None:
        self.total_count, self.logits = torch.broadcast_tensors(total_count, logits)

    @property
    def batch_shape(self) -> torch.Size:
        return self.logits.shape

    def log_prob(self, x: Tensor) -> Tensor:
        n, logits = self.total_count, self.logits
        unnormalised = n * F.logsigmoid(-logits) + F.logsigmoid(logits) * x
        lbeta = torch.lgamma(1 + x) + torch.lgamma(n) - torch.lgamma(1 + x + n)
        return unnormalised - (lbeta + torch.log(n + x))

    @property
    def mean(self) -> Tensor:
        return self.total_count * torch.exp(self.logits)

    @property
    def variance(self) -> Tensor:
        return self.mean / torch.sigmoid(-self.logits)

    def sample(self, sample_shape: torch.Size) -> Tensor:
        gamma = torch.distributions.Gamma(
            self.total_count, torch.exp(-self.logits), validate_args=False
        )
        return torch.poisson(gamma.sample(sample_shape))


class LogNormal(_Component):
    """Log-normal: ``exp`` of a normal with ``loc`` and ``scale``."""

    support = "positive"

    def __init__(self, loc: Tensor, scale: Tensor) -> None:
        self.loc, self.scale = torch.broadcast_tensors(loc, scale)

    @property
    def batch_shape(self) -> torch.Size:
        return self.loc.shape

    def log_prob(self, x: Tensor) -> Tensor:
        log_x = torch.log(x)
        var = self.scale**2
        normal = -((log_x - self.loc) ** 2) / (2 * var) - self.scale.log() - _HALF_LOG_2PI
        return -log_x + normal

    @property
    def mean(self) -> Tensor:
        return (self.loc + self.scale.pow(2) / 2).exp()

    @property
    def variance(self) -> Tensor:
        scale_sq = self.scale.pow(2)
        return scale_sq.expm1() * (2 * self.loc + scale_sq).exp()

    def sample(self, sample_shape: torch.Size) -> Tensor:
        shape = torch.Size(sample_shape) + self.loc.shape
        noise = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return torch.exp(self.loc + self.scale * noise)


class Mixture(_Component):
    """Mixture of elementwise components with weights ``softmax(logits)`` on the last axis."""

    def __init__(self, logits: Tensor, components: Sequence[_Component]) -> None:
        if logits.shape[-1] != len(components):
            raise ValueError(f"{logits.shape[-1]} mixture logits for {len(components)} components")
        # Component axis first: reductions over a handful of components are then plain
        # elementwise passes (softmax/logsumexp over a last axis of size 4 are slow on CPU).
        logits = torch.movedim(logits, -1, 0)
        self._log_w = logits - logits.logsumexp(dim=0, keepdim=True)
        self.components = list(components)

    @property
    def batch_shape(self) -> torch.Size:
        return self._log_w.shape[1:]

    @property
    def log_weights(self) -> Tensor:
        """Log mixture probabilities, shape ``(*batch, n_components)``."""
        return torch.movedim(self._log_w, 0, -1)

    @property
    def weights(self) -> Tensor:
        """Mixture probabilities, shape ``(*batch, n_components)``."""
        return self.log_weights.exp()

    def log_prob(self, x: Tensor) -> Tensor:
        lps = []
        for comp in self.components:
            ok = comp.in_support(x)
            # Evaluate at an in-support placeholder where x is outside, so that neither the value
            # nor its gradient turns NaN (the reference draws a sample there instead).
            lp = comp.log_prob(torch.where(ok, x, torch.ones_like(x)))
            lps.append(torch.where(ok, lp, -math.inf))
        comp_lp = torch.stack(lps)
        log_w = self._log_w
        extra = comp_lp.dim() - log_w.dim()  # sample dims of x in front of the batch dims
        if extra > 0:
            log_w = log_w.reshape(log_w.shape[0], *(1,) * extra, *log_w.shape[1:])
        log_w = torch.where(torch.isinf(comp_lp), 0.0, log_w)
        return (log_w + comp_lp).logsumexp(dim=0)

    @property
    def mean(self) -> Tensor:
        probs = self._log_w.exp()
        return (probs * torch.stack([c.mean for c in self.components])).sum(dim=0)

    @property
    def variance(self) -> Tensor:
        # law of total variance, written as the reference does
        probs = self._log_w.exp()
        means = torch.stack([c.mean for c in self.components])
        expected_var = (probs * torch.stack([c.variance for c in self.components])).sum(dim=0)
        mean = (probs * means).sum(dim=0)
        return expected_var + ((probs * means.pow(2.0)).sum(dim=0) - mean.pow(2.0))

    def sample(self, sample_shape: torch.Size) -> Tensor:
        draws = torch.stack([c.sample(sample_shape) for c in self.components], dim=-1)
        choice = torch.distributions.Categorical(logits=self.log_weights, validate_args=False)
        index = choice.sample(sample_shape).unsqueeze(-1)
        return torch.gather(draws, -1, index.expand(*draws.shape[:-1], 1)).squeeze(-1)


class AffineTransformed:
    """``loc + scale * X`` for a base distribution ``X``: the model's predictive distribution.

    Parameters
    ----------
    base : Mixture or component
        Distribution in standardised space, batch shape ``(*batch, tokens, max_patch)``.
    loc, scale : Tensor, optional
        Broadcastable to the batch shape (Moirai: ``(*batch, tokens, 1)``).
    """

    def __init__(self, base: _Component, loc: Tensor | None, scale: Tensor | None) -> None:
        self.base = base
        self.loc = _f32(loc) if loc is not None else None
        self.scale = _f32(scale) if scale is not None else None

    def log_prob(self, value: Tensor) -> Tensor:
        """Elementwise log density (log mass for the negative binomial part)."""
        x = _f32(value)
        if self.loc is not None:
            x = x - self.loc
        if self.scale is None:
            return self.base.log_prob(x)
        return self.base.log_prob(x / self.scale) - self.scale.abs().log()

    def standardized_log_prob(self, value: Tensor) -> Tensor:
        """Log density of ``(value - loc) / scale`` under the base distribution: the log
        density in standardised units (``log_prob(value) + log|scale|``)."""
        x = _f32(value)
        if self.loc is not None:
            x = x - self.loc
        return self.base.log_prob(x if self.scale is None else x / self.scale)

    @property
    def mean(self) -> Tensor:
        """Elementwise mean."""
        out = self.base.mean
        if self.scale is not None:
            out = out * self.scale
        return out + self.loc if self.loc is not None else out

    @property
    def variance(self) -> Tensor:
        """Elementwise variance."""
        out = self.base.variance
        return out * self.scale**2 if self.scale is not None else out

    @property
    def stddev(self) -> Tensor:
        """Elementwise standard deviation."""
        return self.variance.sqrt()

    @property
    def batch_shape(self) -> torch.Size:
        """Shape of :attr:`mean` and of one draw."""
        shapes = [t.shape for t in (self.loc, self.scale) if t is not None]
        return torch.broadcast_shapes(self.base.batch_shape, *shapes)

    def sample(self, sample_shape: Sequence[int] = ()) -> Tensor:
        """Draw ``sample_shape + batch_shape`` samples (no gradient)."""
        with torch.no_grad():
            x = self.base.sample(torch.Size(sample_shape))
            if self.scale is not None:
                x = self.scale * x
            return x + self.loc if self.loc is not None else x


def _component(spec: ComponentSpec, raw: Mapping[str, Tensor]) -> _Component:
    p = {k: _f32(v).squeeze(-1) for k, v in raw.items()}
    if spec.name == "student_t":
        return StudentT(2.0 + F.softplus(p["df"]), p["loc"], _positive(p["scale"]))
    if spec.name == "normal":
        return Normal(p["loc"], _positive(p["scale"]))
    if spec.name == "normal_fixed_scale":
        loc = p["loc"]
        return Normal(loc, torch.as_tensor(spec.scale, dtype=loc.dtype, device=loc.device))
    if spec.name == "negative_binomial":
        return NegativeBinomial(F.softplus(p["total_count"]), p["logits"])
    return LogNormal(p["loc"], _positive(p["scale"]))


def map_params(raw_params: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """``fn`` applied to every tensor of raw parameters (:meth:`DistrParamProj.forward`)."""
    if isinstance(raw_params, Mapping):
        return {key: map_params(value, fn) for key, value in raw_params.items()}
    if isinstance(raw_params, list | tuple):
        return [map_params(value, fn) for value in raw_params]
    return fn(raw_params)


def select_rows(raw_params: Any, rows: slice | Tensor) -> Any:
    """The raw parameters (:meth:`DistrParamProj.forward`) of the batch rows ``rows``."""
    return map_params(raw_params, lambda value: value[rows])


def build_distribution(
    spec: DistributionSpec,
    raw_params: Mapping[str, Any],
    loc: Tensor | None = None,
    scale: Tensor | None = None,
) -> AffineTransformed:
    """Apply the domain maps to raw parameters and wrap the result in the affine transform.

    Parameters
    ----------
    spec : MixtureOutputSpec or ComponentSpec
    raw_params : dict
        Output of :meth:`DistrParamProj.forward`.
    loc, scale : Tensor, optional
        Standardisation statistics to undo.
    """
    if isinstance(spec, MixtureOutputSpec):
        comps = [
            _component(c, p) for c, p in zip(spec.components, raw_params["components"], strict=True)
        ]
        base: _Component = Mixture(_f32(raw_params["weights_logits"]), comps)
    else:
        base = _component(spec, raw_params)
    return AffineTransformed(base, loc, scale)

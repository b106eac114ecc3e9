"""Fine-tuning strategies: which parts exist and which are trained (docs/strategies.md).

Every strategy runs through the same model and training code; a strategy is only a
:class:`StrategySpec` saying which MSFT parts to build and which tensors to train.

===================  ======  =========  =========  ==========  ======  ========  =======
strategy             scales  adapters   LoRA       aggregator  head    backbone  prompts
===================  ======  =========  =========  ==========  ======  ========  =======
``"msft"``           K + 1   per scale  per scale  yes         yes     frozen    UniTS
``"lora"``           1       no         one        no          yes     frozen    UniTS
``"adalora"``        1       no         one (SVD,  no          yes     frozen    UniTS
                                        pruned)
``"prompt-tuning"``  1       no         no         no          MOMENT  frozen    yes
``"full"``           1       no         no         no          yes     trained   UniTS
``"linear-probe"``   1       no         no         no          yes     frozen    UniTS
``"zero-shot"``      1       no         no         no          no      frozen    no
===================  ======  =========  =========  ==========  ======  ========  =======

``"adalora"`` (Zhang et al., 2023) puts an SVD-form update ``P diag(lambda) Q`` on the
projections LoRA targets, starts at rank ``ceil(1.5 * lora_rank)`` and prunes the least
important singular values to an average rank of ``lora_rank`` on a cubic schedule
(:mod:`msft_forecast.msft.adalora`).  ``"prompt-tuning"`` (Lester et al., 2021) prepends
``num_prompt_tokens`` learned tokens to the encoder's input and trains those alone; MOMENT,
which has no forecasting head from pre-training, trains its new heads too ("head: MOMENT").

UniTS differs in its tokens: it prepends a data set's ``prompt_num`` prompt tokens (and builds
its horizon tokens from a mask token) by design, and every training strategy trains these
("prompts: UniTS").  Its ``"prompt-tuning"`` is the authors' own: it trains exactly those
tokens, adds none (``num_prompt_tokens`` does not apply) and keeps the head frozen
(:mod:`msft_forecast.msft.units_model`).

The ablations of the paper are switches on ``"msft"``: ``aggregator=False``,
``shared_lora=True``, ``scale_weighting="finest"`` (train on all scales, forecast with scale 0
only) and ``num_scales=1``.

How the scales' forecasts are weighted (``scale_weighting``, :data:`SCALE_WEIGHTINGS`) is a
separate choice from how their samples are combined (``mixing``, :data:`MIXING_MODES`); see
:mod:`msft_forecast.msft.mixing`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

FitStrategy = Literal[
    "msft", "lora", "adalora", "prompt-tuning", "full", "linear-probe", "zero-shot"
]
FIT_STRATEGIES: tuple[str, ...] = (
    "msft",
    "lora",
    "adalora",
    "prompt-tuning",
    "full",
    "linear-probe",
    "zero-shot",
)
MixingMode = Literal["blend", "mixture"]
MIXING_MODES: tuple[str, ...] = ("blend", "mixture")
ScaleWeighting = Literal["validation", "learned", "paper", "uniform", "finest"]
SCALE_WEIGHTINGS: tuple[str, ...] = ("validation", "learned", "paper", "uniform", "finest")
LORA_TARGETS: tuple[str, ...] = ("q", "k", "v", "out", "ffn")
#: Default ``num_prompt_tokens`` of ``"prompt-tuning"``.
DEFAULT_NUM_PROMPT_TOKENS = 8


@dataclass(frozen=True)
class StrategySpec:
    """What a fine-tuning strategy builds and trains.

    Attributes
    ----------
    name : str
        One of :data:`FIT_STRATEGIES`.
    num_scales : int
        Number of scales including the original (``K + 1``).
    scale_adapters : bool
        Per-scale identity-initialised input adapters.
    lora_targets : tuple of str
        Projections that get LoRA (subset of ``("q", "k", "v", "out", "ffn")``); empty for none.
    lora_rank, lora_alpha : int, float
        LoRA rank and alpha (``"adalora"``: the target average rank, see
        :attr:`adalora_init_rank`).
    adalora : bool
        The LoRA slots hold AdaLoRA's SVD-form updates with rank allocation instead of LoRA.
    prompt_tokens : int
        Learned prefix tokens prepended to the encoder's input (0: none; UniTS trains its own
        prompt tokens instead and ignores the number).
    shared_lora : bool
        One LoRA for all scales instead of one per scale.
    aggregator : bool
        Cross-scale aggregator in every layer.
    aggregator_rank : int or None
        Rank of the aggregator maps (None: full ``d x d``).
    mixing : {"blend", "mixture"}
        How the per-scale sample paths are combined at inference.
    scale_weighting : {"validation", "learned", "paper", "uniform", "finest"}
        Where the inference weights of the scales come from (see
        :mod:`msft_forecast.msft.mixing`).
    scale_weight_prior : float
        Initial logit of scale 0 (``"paper"``: the authors' prior; 0 is uniform).
    train_head : bool
        Train the output head (Moirai's distribution projection; MOMENT's forecasting head).
    train_backbone : bool
        Train every backbone weight (full fine-tuning).
    trains : bool
        False for zero-shot (nothing is trained).
    """

    name: str
    num_scales: int = 1
    scale_adapters: bool = False
    lora_targets: tuple[str, ...] = ()
    lora_rank: int = 16
    lora_alpha: float = 16.0
    adalora: bool = False
    prompt_tokens: int = 0
    shared_lora: bool = False
    aggregator: bool = False
    aggregator_rank: int | None = 64
    mixing: MixingMode = "mixture"
    scale_weighting: ScaleWeighting = "validation"
    scale_weight_prior: float = 0.0
    train_head: bool = True
    train_backbone: bool = False
    trains: bool = True

    def __post_init__(self) -> None:
        if self.prompt_tokens and (self.num_scales > 1 or self.lora_targets or self.aggregator):
            raise ValueError("Prompt tokens are built for one scale without LoRA or aggregator.")

    @property
    def adalora_init_rank(self) -> int:
        """AdaLoRA's initial rank: 1.5 times the target average rank, as in the paper's
        experiments (``b(0) = 1.5 b(T)``; peft's defaults 12 and 8 have the same ratio)."""
        return math.ceil(1.5 * self.lora_rank)


def resolve_strategy(
    fit_strategy: str = "msft",
    *,
    num_scales: int = 4,
    lora_rank: int = 16,
    lora_alpha: float = 16.0,
    lora_targets: tuple[str, ...] | list[str] = ("q", "k", "v"),
    shared_lora: bool = False,
    aggregator: bool = True,
    aggregator_rank: int | None = 64,
    mixing: str = "mixture",
    scale_weighting: str = "validation",
    scale_weight_prior: float = 0.0,
    train_head: bool = True,
    num_prompt_tokens: int = DEFAULT_NUM_PROMPT_TOKENS,
) -> StrategySpec:
    """Turn user settings into a :class:`StrategySpec`, validating every value.

    Settings that a strategy does not use (e.g. ``num_scales`` for ``"full"``) are ignored.

    Examples
    --------
    >>> resolve_strategy("msft", num_scales=4).lora_targets
    ('q', 'k', 'v')
    >>> resolve_strategy("full").num_scales
    1
    """
    if fit_strategy not in FIT_STRATEGIES:
        raise ValueError(f"fit_strategy must be one of {FIT_STRATEGIES}, got {fit_strategy!r}.")
    if mixing not in MIXING_MODES:
        raise ValueError(f"mixing must be one of {MIXING_MODES}, got {mixing!r}.")
    if scale_weighting not in SCALE_WEIGHTINGS:
        raise ValueError(
            f"scale_weighting must be one of {SCALE_WEIGHTINGS}, got {scale_weighting!r}."
        )
    if not math.isfinite(float(scale_weight_prior)):
        raise ValueError(f"scale_weight_prior must be a finite number, got {scale_weight_prior!r}.")
    if not isinstance(num_scales, int) or num_scales < 1:
        raise ValueError(
            f"num_scales must be an integer >= 1 (1 = no extra scale), got {num_scales!r}."
        )
    targets = tuple(lora_targets)
    unknown = sorted(set(targets) - set(LORA_TARGETS))
    if unknown:
        raise ValueError(f"lora_targets must be among {LORA_TARGETS}, got unknown {unknown}.")
    if int(lora_rank) < 1:
        raise ValueError(f"lora_rank must be >= 1, got {lora_rank!r}.")
    if aggregator_rank is not None and int(aggregator_rank) < 1:
        raise ValueError(f"aggregator_rank must be >= 1 or None, got {aggregator_rank!r}.")
    if not isinstance(num_prompt_tokens, int) or num_prompt_tokens < 1:
        raise ValueError(f"num_prompt_tokens must be an integer >= 1, got {num_prompt_tokens!r}.")
    lora = dict(lora_rank=int(lora_rank), lora_alpha=float(lora_alpha))
    if fit_strategy == "msft":
        return StrategySpec(
            "msft",
            num_scales=num_scales,
            scale_adapters=num_scales > 1,
            lora_targets=targets,
            shared_lora=shared_lora,
            aggregator=aggregator and num_scales > 1,
            aggregator_rank=aggregator_rank,
            mixing=mixing,
            scale_weighting=scale_weighting if num_scales > 1 else "finest",
            scale_weight_prior=float(scale_weight_prior),
            train_head=train_head,
            **lora,
        )
    if fit_strategy == "lora":
        return StrategySpec(
            "lora", lora_targets=targets, shared_lora=True, train_head=train_head, **lora
        )
    if fit_strategy == "adalora":
        return StrategySpec(
            "adalora", lora_targets=targets, adalora=True, shared_lora=True,
            train_head=train_head, **lora,
        )  # fmt: skip
    if fit_strategy == "prompt-tuning":
        # the prompts alone (Lester et al.); a backbone whose head is new trains it too
        return StrategySpec("prompt-tuning", prompt_tokens=num_prompt_tokens, train_head=False)
    if fit_strategy == "full":
        return StrategySpec("full", train_backbone=True)
    if fit_strategy == "linear-probe":
        return StrategySpec("linear-probe")
    return StrategySpec("zero-shot", train_head=False, trains=False)

"""AdaLoRA (Zhang et al., ICLR 2023): SVD-form low-rank updates whose ranks follow importance.

Each targeted projection gets ``delta(x) = (alpha / r0) * P diag(lambda) Q x`` (:class:`AdaLoRA`)
with ``Q`` ``(r0, d_in)``, ``lambda`` ``(r0, 1)`` and ``P`` ``(d_out, r0)``.  ``lambda`` starts at
zero, so the untrained update is an exact no-op, like LoRA's.  Training adds
``ORTH_REG_WEIGHT`` times the mean of ``||Q Q^T - I||_F`` and ``||P^T P - I||_F`` over all
matrices to the loss (:func:`orthogonal_regularisation`), and after every optimiser step the
:class:`RankAllocator` scores every triplet ``(P_i, lambda_i, Q_i)`` by smoothed sensitivity
times uncertainty and zeroes the ``lambda_i`` of the least important ones, so that the total
rank follows a cubic schedule from ``r0`` per matrix down to the target average rank.

The rule and the defaults are peft's (``peft.tuners.adalora``, the reference implementation of
the paper's authors): the same initialisation, forward, regulariser, importance (``|w * grad|``
smoothed with ``beta1``, its deviation with ``beta2``; a triplet scores
``s(lambda_i) + mean s(Q_i) + mean s(P_i)``), schedule and masking, checked against peft on a toy
layer (``tests/test_peft_strategies.py``).  It is written here instead of used from peft because
peft replaces ``nn.Linear`` modules inside a model, where this package adds updates through the
backbones' ``lora`` slots to frozen projections shared between models
(:mod:`msft_forecast.backbones.hooks`).

Schedule defaults, scaled to the 100-1000 steps of a fine-tune here: the budget stays at the
initial rank for the first 10% of the steps (``tinit``), falls over the next 70% and stays at
the target for the last 20% (``tfinal``), the proportions of peft's own worked example (10, 20
of 100 steps); allocation at every step (``deltaT = 1``), ``beta1 = beta2 = 0.85`` and
``orth_reg_weight = 0.5`` as in peft's ``AdaLoraConfig``.

A pruned ``lambda_i`` is exactly zero, so a saved model needs nothing but its tensors to
forecast as trained; each module's ``rank_mask`` (the allocated pattern) is saved with them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

#: Weight of the orthogonality regulariser in the training loss (peft's default).
ORTH_REG_WEIGHT = 0.5
#: Smoothing of the sensitivity (beta1) and of its uncertainty (beta2), peft's defaults.
BETA1, BETA2 = 0.85, 0.85
#: Fractions of the step budget spent before pruning starts and after it ends.
TINIT_FRACTION, TFINAL_FRACTION = 0.1, 0.2


class AdaLoRA(nn.Module):
    """SVD-form update ``(alpha / r0) * P diag(lambda) Q x`` for one frozen projection.

    Names follow peft: ``lora_A`` is ``Q`` ``(r0, d_in)``, ``lora_E`` is ``lambda``
    ``(r0, 1)``, ``lora_B`` is ``P`` ``(d_out, r0)``; ``Q`` and ``P`` start from N(0, 0.02^2),
    ``lambda`` from zero.  Fits a ``lora`` slot: ``forward(x, scale_ctx)`` returns the delta
    (one update for every scale).

    Parameters
    ----------
    in_features, out_features : int
        Shape of the frozen projection.
    rank : int
        Initial rank ``r0``.
    alpha : float
        Scaling numerator (the update is scaled by ``alpha / r0``).
    """

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float) -> None:
        super().__init__()
        self.rank = rank
        self.scaling = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, in_features))
        self.lora_E = nn.Parameter(torch.zeros(rank, 1))
        self.lora_B = nn.Parameter(torch.empty(out_features, rank))
        nn.init.normal_(self.lora_A, mean=0.0, std=0.02)
        nn.init.normal_(self.lora_B, mean=0.0, std=0.02)
        #: Which singular values the allocator kept (all at first).
        self.register_buffer("rank_mask", torch.ones(rank, dtype=torch.bool))

    def forward(self, x: Tensor, scale_ctx: Any = None) -> Tensor:
        a = (self.lora_A * self.lora_E).to(x.dtype)
        return (x @ a.transpose(0, 1)) @ self.lora_B.to(x.dtype).transpose(0, 1) * self.scaling

    def orthogonality(self) -> Tensor:
        """``||Q Q^T - I||_F + ||P^T P - I||_F``."""
        a, b = self.lora_A, self.lora_B
        eye = torch.eye(self.rank, device=a.device, dtype=a.dtype)
        with torch.autocast(a.device.type, enabled=False):  # in the parameters' float32
            return torch.linalg.matrix_norm(a @ a.T - eye) + torch.linalg.matrix_norm(b.T @ b - eye)


def adalora_modules(model: nn.Module) -> dict[str, AdaLoRA]:
    """Every :class:`AdaLoRA` in ``model`` by name, in module order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, AdaLoRA)}


def orthogonal_regularisation(modules: list[nn.Module]) -> Tensor | None:
    """``ORTH_REG_WEIGHT`` times the mean over the ``P`` and ``Q`` matrices of their distance
    from orthonormal columns / rows (peft's ``AdaLoraModel.forward``); None without AdaLoRA.

    Every :class:`AdaLoRA` in ``modules`` counts, also one nested inside another module (UniTS'
    fused ``qkv`` holds one update per third)."""
    ada = [a for m in modules for a in m.modules() if isinstance(a, AdaLoRA)]
    if not ada:
        return None
    return ORTH_REG_WEIGHT * torch.stack([m.orthogonality() for m in ada]).sum() / (2 * len(ada))


class RankAllocator:
    """Importance scores, the cubic budget schedule and the masking of AdaLoRA's triplets.

    Call :meth:`update_and_allocate` after every optimiser step, while the step's gradients are
    still on the parameters (:class:`msft_forecast.training.lightning.RankAllocation` does).

    Parameters
    ----------
    modules : dict of str to AdaLoRA
        The updates whose ranks share one budget.
    target_rank : int
        Target average rank (the final budget is ``target_rank * len(modules)``).
    total_step : int
        Steps of the fit.
    tinit, tfinal : int, optional
        Steps at the initial budget, and at the final one; default 10% and 20% of
        ``total_step``.
    delta_t : int
        Steps between two allocations while the budget falls.
    beta1, beta2 : float
        Smoothing of the sensitivity and of its uncertainty.
    """

    def __init__(
        self, modules: dict[str, AdaLoRA], target_rank: int, total_step: int,
        tinit: int | None = None, tfinal: int | None = None, delta_t: int = 1,
        beta1: float = BETA1, beta2: float = BETA2,
    ) -> None:  # fmt: skip
        if total_step < 1:
            raise ValueError(f"total_step must be >= 1, got {total_step}.")
        self.modules = modules
        self.total_step = int(total_step)
        self.tinit = int(TINIT_FRACTION * total_step) if tinit is None else int(tinit)
        self.tfinal = int(TFINAL_FRACTION * total_step) if tfinal is None else int(tfinal)
        if self.tinit >= self.total_step - self.tfinal:
            raise ValueError("tinit and tfinal leave no steps in which the budget falls.")
        self.delta_t = int(delta_t)
        self.beta1, self.beta2 = beta1, beta2
        self.init_budget = sum(m.rank for m in modules.values())
        self.target_budget = int(target_rank) * len(modules)
        self.reset_importance()

    @classmethod
    def for_model(cls, model: nn.Module, total_step: int) -> RankAllocator | None:
        """The allocator of a model's AdaLoRA updates (target rank ``model.spec.lora_rank``),
        or None when it has none."""
        modules = adalora_modules(model)
        if not modules or total_step < 1:
            return None
        return cls(modules, int(model.spec.lora_rank), total_step)

    def reset_importance(self) -> None:
        self.ipt: dict[str, Tensor] = {}
        self.exp_avg_ipt: dict[str, Tensor] = {}
        self.exp_avg_unc: dict[str, Tensor] = {}

    # ------------------------------------------------------------------------------ schedule
    def budget_schedule(self, step: int) -> tuple[int, bool]:
        """The total rank budget at ``step`` and whether to mask to it now."""
        if step <= self.tinit:
            return self.init_budget, False
        if step > self.total_step - self.tfinal:
            return self.target_budget, True
        fraction = 1 - (step - self.tinit) / (self.total_step - self.tfinal - self.tinit)
        budget = int((self.init_budget - self.target_budget) * fraction**3 + self.target_budget)
        return budget, step % self.delta_t == 0

    # ---------------------------------------------------------------------------- importance
    def _tensors(self):
        for name, m in self.modules.items():
            for part in ("lora_A", "lora_E", "lora_B"):
                yield f"{name}.{part}", getattr(m, part)

    @torch.no_grad()
    def update_importance(self) -> None:
        """Sensitivity ``|w * grad|`` of every entry, smoothed (beta1), and its uncertainty
        (the smoothed deviation from the smoothed sensitivity, beta2)."""
        for key, p in self._tensors():
            if key not in self.ipt:
                self.exp_avg_ipt[key] = torch.zeros_like(p)
                self.exp_avg_unc[key] = torch.zeros_like(p)
            grad = torch.zeros_like(p) if p.grad is None else p.grad
            ipt = (p * grad).abs()
            self.ipt[key] = ipt
            self.exp_avg_ipt[key] = self.beta1 * self.exp_avg_ipt[key] + (1 - self.beta1) * ipt
            self.exp_avg_unc[key] = (
                self.beta2 * self.exp_avg_unc[key]
                + (1 - self.beta2) * (ipt - self.exp_avg_ipt[key]).abs()
            )

    def _score(self, key: str) -> Tensor:
        return self.exp_avg_ipt[key] * self.exp_avg_unc[key]

    def triplet_scores(self) -> dict[str, Tensor]:
        """``(r0,)`` importance of every triplet of every module."""
        out = {}
        for name in self.modules:
            e = self._score(f"{name}.lora_E").view(-1)
            a = self._score(f"{name}.lora_A").mean(dim=1)
            b = self._score(f"{name}.lora_B").mean(dim=0)
            out[name] = e + a + b
        return out

    @torch.no_grad()
    def mask_to_budget(self, budget: int) -> None:
        """Zero the ``lambda`` of all but the ``budget`` most important triplets (ties at the
        threshold are pruned together, as in peft)."""
        if budget >= self.init_budget:
            return
        scores = self.triplet_scores()
        threshold = torch.kthvalue(torch.cat(list(scores.values())), self.init_budget - budget)
        for name, m in self.modules.items():
            keep = scores[name] > threshold.values
            m.rank_mask.copy_(keep)
            m.lora_E.masked_fill_(~keep.unsqueeze(-1), 0.0)

    @torch.no_grad()
    def apply_mask(self) -> None:
        """Zero the ``lambda`` the allocated pattern pruned (after the budget reached its end,
        where peft applies its rank pattern)."""
        for m in self.modules.values():
            m.lora_E.masked_fill_(~m.rank_mask.unsqueeze(-1), 0.0)

    def update_and_allocate(self, step: int) -> None:
        """After optimiser step ``step`` (1 after the first): peft's
        ``AdaLoraModel.update_and_allocate``."""
        end = self.total_step - self.tfinal
        if step < end:
            self.update_importance()
            budget, mask = self.budget_schedule(step)
            if mask:
                self.mask_to_budget(budget)
        elif step == end:
            self.mask_to_budget(self.budget_schedule(step)[0])  # the target budget
            self.reset_importance()
        else:
            self.apply_mask()

    def ranks(self) -> dict[str, int]:
        """Allocated rank of every module."""
        return {name: int(m.rank_mask.sum()) for name, m in self.modules.items()}

    # ---------------------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {"exp_avg_ipt": dict(self.exp_avg_ipt), "exp_avg_unc": dict(self.exp_avg_unc)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reset_importance()
        for key, value in state.get("exp_avg_ipt", {}).items():
            self.exp_avg_ipt[key] = value
            self.ipt[key] = torch.zeros_like(value)
        self.exp_avg_unc.update(state.get("exp_avg_unc", {}))

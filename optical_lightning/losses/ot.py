r"""The OPTICAL head: entropic optimal transport between teacher and student token clouds.

For one sentence pair, let :math:`x_1..x_N` be the teacher's (English) and :math:`y_1..y_M` the
student's (Swahili, Somali, ...) L2-normalised token embeddings, with marginal weights
:math:`a \in \Delta_N`, :math:`b \in \Delta_M` (uniform over content tokens, or idf; padding gets 0).

* **Cost** - cosine distance, :math:`C_{ij} = 1 - \langle x_i, y_j\rangle \in [0, 2]`
  (equal to GeomLoss's :math:`\tfrac12\|x_i-y_j\|^2` for unit vectors).
* **Centring** (``center``, off by default) - each cloud's weighted mean is removed before the cosine,
  :math:`\tilde x_i = (x_i - \sum_k a_k x_k) / \|x_i - \sum_k a_k x_k\|` and likewise for :math:`y`, so a
  shift shared by every token of a sentence (a language offset) neither lowers nor raises the cost: only how
  the tokens are arranged around their mean is aligned. On the language model one shift per prompt gave most
  of what a trained student took off the plain cost, and moved no answer (docs/reasoning.md, finding 15).
* **Plan** - entropic OT with :math:`\varepsilon = \text{blur}^2`:

  .. math:: P^\star = \arg\min_{P\ge0,\;P\mathbf 1=a,\;P^\top\mathbf 1=b}
            \langle P, C\rangle_F + \varepsilon\,\mathrm{KL}(P \,\|\, a\otimes b),

  written through the dual potentials as :math:`P^\star_{ij} = a_i b_j \exp((f_i+g_j-C_{ij})/\varepsilon)`,
  where :math:`f, g` are the fixed point of the log-domain Sinkhorn updates

  .. math:: f_i = -\lambda\varepsilon\log\textstyle\sum_j b_j e^{(g_j-C_{ij})/\varepsilon},\qquad
            g_j = -\lambda\varepsilon\log\textstyle\sum_i a_i e^{(f_i-C_{ij})/\varepsilon}.

  :math:`\lambda = 1` for balanced OT. With ``reach`` set, the hard marginal constraints become
  penalties :math:`\rho\,\mathrm{KL}(P\mathbf 1\|a)+\rho\,\mathrm{KL}(P^\top\mathbf 1\|b)`,
  :math:`\rho=\text{reach}^2`, and :math:`\lambda = 1/(1+\varepsilon/\rho)` (unbalanced OT: tokens
  without a counterpart may stay untransported).
* **Solver** - GeomLoss's tensorized Sinkhorn with :math:`\varepsilon`-scaling (annealing from
  :math:`\text{diameter}^2 = 4` down to blur² by factors of scaling²) gives warm-started potentials;
  its loop stops as soon as blur is reached, leaving marginal errors near 1e-2, so ``refine_iters``
  plain updates at the final :math:`\varepsilon` tighten them (each ends on an exact :math:`P\mathbf 1=a`).
* **Losses** (per pair, averaged over the batch)

  - ``transport`` (OPTICAL): :math:`L = \langle P^\star, C\rangle_F`. :math:`P^\star` is held constant
    in the backward pass: by the envelope theorem it is the gradient of the entropic OT cost with
    respect to :math:`C`, so no back-propagation through Sinkhorn iterations is needed.
  - ``divergence``: GeomLoss's debiased Sinkhorn divergence
    :math:`S_\varepsilon(\alpha,\beta)=OT_\varepsilon(\alpha,\beta)-\tfrac12OT_\varepsilon(\alpha,\alpha)-\tfrac12OT_\varepsilon(\beta,\beta)`,
    which is 0 when the two clouds coincide.

Everything runs in float32 (GeomLoss has no float16 path), also under mixed precision, and as
batched (B, N, M) tensors with no Python loop over pairs and no host synchronisation.

**Bounds** - a step runs about :math:`\lceil\log(\text{diameter}/\text{blur})/\log(1/\text{scaling})\rceil`
annealing iterations plus ``refine_iters``, so both are bounded to keep a step bounded
(``ot.scaling=0.99999999`` meant 3e8 iterations, ``ot.refine_iters=1e9`` a step that never ends):
``scaling <= 0.99`` and ``blur >= 0.01`` give at most 528 annealing iterations, and ``refine_iters <= 5000``
(100x the default 50; plans close to exact OT need a few thousand). ``blur >= 0.01``
(:math:`\varepsilon \ge 10^{-4}`) also keeps :math:`C/\varepsilon \le 2\cdot10^4`, where float32 still resolves the
log-domain updates; every setting must be finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from geomloss import SamplesLoss
from torch import Tensor, nn

from optical_lightning.utils.errors import ConfigError

MIN_BLUR = 0.01
MAX_SCALING = 0.99
MAX_REFINE_ITERS = 5000
LOG_ZERO = -1e5  # log-weight of padding: exp underflows to exactly 0, unlike -inf it never gives NaN


def cosine_cost(x: Tensor, y: Tensor) -> Tensor:
    """(B, N, D), (B, M, D) unit vectors -> (B, N, M) cosine distances ``1 - x @ y.T``."""
    return 1.0 - x @ y.transpose(-1, -2)


def _softmin(eps: float, cost: Tensor, h: Tensor) -> Tensor:
    """:math:`-\\varepsilon \\log \\sum_j \\exp(h_j - C_{ij}/\\varepsilon)` over the last axis."""
    return -eps * torch.logsumexp(h.unsqueeze(-2) - cost / eps, dim=-1)


def _log_weights(w: Tensor) -> Tensor:
    return torch.where(w > 0, w.clamp_min(1e-30).log(), torch.full_like(w, LOG_ZERO))


@dataclass
class OTOutput:
    loss: Tensor  # () mean over pairs of the chosen loss
    per_pair: Tensor  # (B,) the chosen loss per pair
    transport_cost: Tensor  # (B,) <P, C>_F, detached
    plan_entropy: Tensor  # (B,) -sum P log P in nats, detached
    plan: Tensor  # (B, N, M), detached - for inspection and heatmaps
    cost: Tensor  # (B, N, M), detached


class OTDistillationHead(nn.Module):
    """Entropic-OT distillation loss between token clouds (the math is in the module docstring).

    Args:
        blur: entropic scale; :math:`\\varepsilon = \\text{blur}^2` in cosine-distance units.
        scaling: ratio between successive blurs in GeomLoss's epsilon-scaling, in (0, 1).
        reach: ``None`` for balanced OT, else the unbalanced reach (:math:`\\rho = \\text{reach}^2`).
        loss: ``transport`` (OPTICAL's <P, C>) or ``divergence`` (debiased Sinkhorn divergence).
        refine_iters: extra Sinkhorn updates at the final epsilon to tighten the plan's marginals.
        marginals: ``uniform`` or ``idf`` token weights (applied by the Lightning module).
        special_tokens: let special and prefix tokens take part in the alignment.
        center: remove each cloud's weighted mean before the cosine (see *Centring* above).
    """

    def __init__(
        self,
        blur: float = 0.1,
        scaling: float = 0.9,
        reach: float | None = None,
        loss: Literal["transport", "divergence"] = "transport",
        refine_iters: int = 50,
        marginals: Literal["uniform", "idf"] = "uniform",
        special_tokens: bool = False,
        center: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(blur, bool) or not isinstance(blur, (int, float)) or not MIN_BLUR <= blur < math.inf:
            raise ConfigError(f"ot.blur={blur!r}: must be a finite number >= {MIN_BLUR} (epsilon = blur^2 in cosine-distance "
                              f"units; smaller is lost to float32 rounding); try ot.blur=0.1")
        if isinstance(scaling, bool) or not isinstance(scaling, (int, float)) or not 0 < scaling <= MAX_SCALING:
            raise ConfigError(f"ot.scaling={scaling!r}: must lie in (0, {MAX_SCALING}] (closer to 1 multiplies the Sinkhorn "
                              f"iterations of every step without bound); try ot.scaling=0.9")
        if reach is not None and (isinstance(reach, bool) or not isinstance(reach, (int, float))
                                  or not 0 < reach < math.inf):
            raise ConfigError(f"ot.reach={reach!r}: must be a finite number > 0, or null for balanced OT")
        if loss not in ("transport", "divergence"):
            raise ConfigError(f"ot.loss={loss}: choose 'transport' (OPTICAL) or 'divergence'")
        if isinstance(refine_iters, bool) or not isinstance(refine_iters, int) or not 0 <= refine_iters <= MAX_REFINE_ITERS:
            raise ConfigError(f"ot.refine_iters={refine_iters!r}: must be an integer in [0, {MAX_REFINE_ITERS}] (Sinkhorn "
                              f"updates per step after the annealing); try ot.refine_iters=50")
        if marginals not in ("uniform", "idf"):
            raise ConfigError(f"ot.marginals={marginals}: choose 'uniform' or 'idf'")
        if not isinstance(center, bool):
            raise ConfigError(f"ot.center={center!r}: must be true or false")
        self.blur, self.scaling, self.reach, self.loss = blur, scaling, reach, loss
        self.refine_iters, self.marginals, self.special_tokens = refine_iters, marginals, special_tokens
        self.center = center
        self.eps = blur**2
        self.damping = 1.0 if reach is None else 1.0 / (1.0 + self.eps / reach**2)
        common = dict(p=2, blur=blur, reach=reach, scaling=scaling, diameter=2.0, cost=cosine_cost,
                      backend="tensorized")
        self._potentials = SamplesLoss("sinkhorn", debias=False, potentials=True, **common)
        self._divergence = SamplesLoss("sinkhorn", debias=True, **common)

    def extra_repr(self) -> str:
        return (f"loss={self.loss}, blur={self.blur}, scaling={self.scaling}, reach={self.reach}, "
                f"marginals={self.marginals}, center={self.center}")

    def _prepare(self, tokens: Tensor, weights: Tensor) -> Tensor:
        """The tokens the cosine reads: as given, or each cloud's weighted mean removed (``center``)."""
        if not self.center:
            return tokens
        return F.normalize(tokens - (weights.unsqueeze(-1) * tokens).sum(-2, keepdim=True), dim=-1)

    @torch.no_grad()
    def solve(self, a: Tensor, x: Tensor, b: Tensor, y: Tensor, cost: Tensor) -> Tensor:
        """The entropic plan (B, N, M) for normalised weights ``a``, ``b`` and precomputed ``cost``."""
        f, g = self._potentials(a, x, b, y)
        a_log, b_log = _log_weights(a), _log_weights(b)
        eps, lam = self.eps, self.damping
        for _ in range(self.refine_iters):
            g = lam * _softmin(eps, cost.transpose(-1, -2), a_log + f / eps)
            f = lam * _softmin(eps, cost, b_log + g / eps)
        return torch.exp(a_log.unsqueeze(-1) + b_log.unsqueeze(-2) + (f.unsqueeze(-1) + g.unsqueeze(-2) - cost) / eps)

    def forward(self, x: Tensor, x_weights: Tensor, y: Tensor, y_weights: Tensor,
                plan_from: Tensor | None = None) -> OTOutput:
        """Loss between teacher tokens ``x`` (B, N, D) and student tokens ``y`` (B, M, D).

        ``x_weights`` (B, N) and ``y_weights`` (B, M) are non-negative token masses (0 = padding);
        each row is normalised to sum to 1. ``plan_from`` (B, M, D), tokens in ``y``'s places, solves the
        plan on ``(x, plan_from)`` instead of ``(x, y)`` and charges ``y`` along it, always by ``<P, C>``
        (:mod:`optical_lightning.losses.base_plan`, which refuses ``loss=divergence``).
        """
        with torch.autocast(device_type=x.device.type, enabled=False):
            x, y = x.float(), y.float()
            a = x_weights.float() / x_weights.float().sum(-1, keepdim=True).clamp_min(1e-12)
            b = y_weights.float() / y_weights.float().sum(-1, keepdim=True).clamp_min(1e-12)
            x, y = self._prepare(x, a), self._prepare(y, b)
            cost = cosine_cost(x, y)
            if plan_from is None:
                plan = self.solve(a, x.detach(), b, y.detach(), cost.detach())
            else:
                y_plan = self._prepare(plan_from.detach().float(), b)
                plan = self.solve(a, x.detach(), b, y_plan, cosine_cost(x.detach(), y_plan))
            transport = (plan * cost).sum(dim=(-2, -1))
            per_pair = transport if self.loss == "transport" or plan_from is not None else self._divergence(a, x, b, y)
            entropy = -(plan * plan.clamp_min(1e-30).log()).sum(dim=(-2, -1))
        return OTOutput(
            loss=per_pair.mean(), per_pair=per_pair, transport_cost=transport.detach(), plan_entropy=entropy,
            plan=plan, cost=cost.detach(),
        )

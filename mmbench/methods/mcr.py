"""``mcr``: the Multimodal Competition Regularizer.

Kontras, Strypsteen, Chatzichristos, Liang, Blaschko, De Vos, "Balancing Multimodal Training
Through Game-Theoretic Regularization", NeurIPS 2025 (arXiv 2411.07335). Official code:
kkontras/MCR @ 338d370 (``models/MCR_Models.py`` ``MCR_Model.shuffle_ids``, ``shuffle_data``,
``forward``; ``agents/general_agent/helpers/Bias_Infusion.py`` ``Bias_Infusion_MCR_Reg``,
``Bias_Infusion_MCR3D``, ``nt_xent_loss``; ``run.sh`` for the settings).

    L = CE(z, y) + w_u sum_m CE(u^m, y) + R_MIPD + c L_Con + lib L_CEB

z is the concat head with bias-free blocks and one shared bias (``fc_m_lin``, ``bias_lin``), u^m
the encoders' own unimodal heads on live features. R_MIPD (the permutation term): a second forward
of the encoders in eval mode with gradients gives psi^m; S permutations of the batch (from the
method's random stream at the global step) shuffle the modalities of a subset T; the logits
l(T, e) = sum_m blk_m + b with blk_m = psi^m[p_s] W_m^T for m in T (else psi^m W_m^T), every block
of a modality other than the live encoder e detached, are compared with the main fused logits by
J(T, e) = JSD(l(T, e), z) over the S*B rows, and the game sets

    greedy (k = -1):        R = -lam sum_e [sum_{T contains e} J(T, e) - sum_{T not contains e} J(T, e)]
    independent (k = 0):    R = -lam sum_e sum_{T contains e} J(T, e)
    collaborative (k = +1): R = -lam sum_T J(T, all)

over the non-empty proper subsets T. L_Con is the label-supervised NT-Xent between the modality
features; L_CEB = mean((concat_m phi^m - g(z.detach()))^2) with g = Linear(K, h) - ReLU -
Linear(h, sum d_m), both bias-free (``CMI_yz_Loss``), built only when lib > 0.

The release at 338d370 computes the two-modality terms but never adds them (the class the
dispatcher reaches returns the loss unchanged); the default adds them as the README and the
working code paths (``Bias_Infusion_MCR_Reg``, ``Bias_Infusion_MCR3D``: ``total += reg_term +
cca_loss_reg``) do. Flags: ``add_regularizer`` (false = the release), ``game``, ``perm_forward``
``eval_pass`` | ``reuse`` (permute the main forward's features), ``target_detach``,
``shuffle_filter`` ``none`` | ``different_label`` | ``not_self``, ``divergence`` ``jsd`` | ``mse``,
``contr_type`` ``label`` | ``pure``, ``collab_3d_as_released`` (the released three-modality
collaborative branch uses the first singleton's term three times). The official runs start the
encoders and unimodal heads from the unimodal checkpoints (``init_from_unimodal``, default true).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmbench.methods.base import Method, check_choices
from mmbench.methods.divergences import js_divergence, nt_xent
from mmbench.methods.heads import ConcatHead
from mmbench.methods.registry import register_method
from mmbench.results.errors import ConfigError

_CHOICES = {
    "game": ("greedy", "independent", "collaborative"),
    "perm_forward": ("eval_pass", "reuse"),
    "shuffle_filter": ("none", "different_label", "not_self"),
    "divergence": ("jsd", "mse"),
    "contr_type": ("label", "pure"),
}


@dataclass
class MCRHyper:
    game: str = "greedy"  # [code] run.sh --reg_by greedy (k = -1)
    lam: float = 0.1  # [code] run.sh CREMA-D res --l 0.1
    w_u: float = 0.01  # [code] run.sh CREMA-D res --multil 0.01
    num_samples: int = 32  # [code] run.sh S = 32
    contr_coeff: float = 1.0  # [code] run.sh
    temperature: float = 0.5  # [code] Bias_Infusion_MCR default
    lib: float = 0.0  # [code] no --lib on the CREMA-D/AVE/UCF ResNet runs
    init_from_unimodal: bool = True  # [code] --pre: encoders and unimodal heads from unimodal checkpoints
    unimodal_suffix: str = ""  # init_from_unimodal: reference runs unimodal-<m>_<suffix> (their tag)
    add_regularizer: bool = True  # [code] Bias_Infusion_MCR_Reg; false = the released 2-modality class
    perm_forward: str = "eval_pass"  # [code] MCR_Model.shuffle_data: eval-mode pass with gradients
    target_detach: bool = False  # [code] MCR_Model: the fused target receives gradient
    shuffle_filter: str = "none"  # [guess] the release leaves the option unset
    divergence: str = "jsd"  # [code] classification: JSD; "mse": the regression variant
    contr_type: str = "label"  # [code] label-supervised NT-Xent; "pure": same-sample views only
    collab_3d_as_released: bool = False  # [code] true: the released 3-modality collaborative branch


# ----------------------------------------------------------------------------- the regulariser
def proper_subsets(modalities) -> list[tuple[str, ...]]:
    """The non-empty proper subsets of ``modalities``, by size then in modality order."""
    mods = tuple(modalities)
    return [c for r in range(1, len(mods)) for c in itertools.combinations(mods, r)]


def permuted_logits(q, b, subset, live, index, rows) -> torch.Tensor:
    """l(T, e) stacked over the S permutations: ``q[m] = psi^m W_m^T`` (B x K); ``index[m]`` the
    row order of modality m (its S permutations, concatenated), ``rows`` that of the unpermuted
    modalities (0..B-1 repeated S times, or the rows a shuffle filter kept); blocks of modalities
    other than ``live`` detached (``live="all"``: none); the bias is never detached. Permuting
    the rows of psi^m W_m^T equals permuting psi^m."""
    total = b
    for m, qm in q.items():
        blk = qm[index[m]] if m in subset else qm[rows]
        total = total + (blk.detach() if live != "all" and m != live else blk)
    return total


def _divergence(kind: str):
    return js_divergence if kind == "jsd" else F.mse_loss


def mipd(
    q, b, z, index, rows, game: str, lam: float, divergence: str = "jsd", collab_as_released: bool = False
):
    """R_MIPD and the individual terms ``{(T, e): J(T, e)}`` (the game formulas above); the target
    is z at ``rows`` (z repeated S times without a shuffle filter)."""
    mods = tuple(q)
    target = z[rows]
    div = _divergence(divergence)
    terms = {}
    subsets = proper_subsets(mods)
    if game == "collaborative":
        if collab_as_released and len(mods) > 2:
            subsets = [(mods[0],)] * len(mods) + [t for t in subsets if len(t) > 1]
        for t in dict.fromkeys(subsets):
            terms[(t, "all")] = div(permuted_logits(q, b, t, "all", index, rows).float(), target.float())
        return -lam * sum(terms[(t, "all")] for t in subsets), terms
    for e in mods:
        for t in subsets:
            if game == "independent" and e not in t:
                continue
            terms[(t, e)] = div(permuted_logits(q, b, t, e, index, rows).float(), target.float())
    return -lam * sum((1.0 if e in t else -1.0) * v for (t, e), v in terms.items()), terms


def draw_permutations(batch: int, samples: int, modalities, generator, labels=None, rule: str = "none"):
    """``{m: S*B row order}``: S permutations of 0..B-1 (``shuffle_ids``), one shared by every
    modality with two modalities, one per modality with more. ``rule`` keeps only the rows whose
    partners have another label (``different_label``) or are other samples (``not_self``); a draw
    keeping at most one row is redrawn. Returns (``{m: row order}``, the kept rows in the order
    of the unpermuted modalities); without a filter every row is kept (S*B rows)."""
    mods = tuple(modalities)
    rows, order = [], {m: [] for m in mods}
    ar = torch.arange(batch)
    for _ in range(samples):
        while True:
            perms = (
                [torch.randperm(batch, generator=generator)] * len(mods)
                if len(mods) == 2
                else [torch.randperm(batch, generator=generator) for _ in mods]
            )
            keep = torch.ones(batch, dtype=torch.bool)
            for p in perms:
                if rule == "different_label":
                    keep &= labels.cpu()[p] != labels.cpu()
                elif rule == "not_self":
                    keep &= p != ar
            if rule == "none" or int(keep.sum()) > 1:
                break
        rows.append(ar[keep])
        for m, p in zip(mods, perms):
            order[m].append(p[keep])
    return {m: torch.cat(v) for m, v in order.items()}, torch.cat(rows)


# ----------------------------------------------------------------------------- heads
class MCRHeads(nn.Module):
    """The concat head with the bias shared (``fused``: blocks W_m initialised as PyTorch's
    ``Linear(d_m, K)``, bias 0), the unimodal heads ``unimodal[m]`` and, when lib > 0, the CEB
    map ``ceb`` = Linear(K, h) - ReLU - Linear(h, sum d_m), bias-free (h = d of the first
    modality, the code's d_model when all sizes are equal)."""

    def __init__(self, dims: dict[str, int], num_classes: int, modalities, with_ceb: bool):
        super().__init__()
        self.modalities = tuple(modalities)
        self.fused = ConcatHead(
            [dims[m] for m in self.modalities], num_classes, self.modalities, init="torch"
        )
        with torch.no_grad():
            for block in torch.split(self.fused.fc.weight, self.fused.dims, dim=1):
                nn.init.kaiming_uniform_(block, a=5**0.5)  # Linear(d_m, K)'s default on each block
            self.fused.fc.bias.zero_()
        self.unimodal = nn.ModuleDict({m: nn.Linear(dims[m], num_classes) for m in self.modalities})
        h = dims[self.modalities[0]]
        total = sum(dims[m] for m in self.modalities)
        self.ceb = (
            nn.Sequential(nn.Linear(num_classes, h, bias=False), nn.ReLU(), nn.Linear(h, total, bias=False))
            if with_ceb
            else None
        )

    def blocks(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.modalities, torch.split(self.fused.fc.weight, self.fused.dims, dim=1)))

    def forward(self, feats):
        out = {"fusion": self.fused.fc(torch.cat([feats[m] for m in self.modalities], dim=1))}
        out.update({m: self.unimodal[m](feats[m]) for m in self.modalities})
        return out


# ----------------------------------------------------------------------------- the method
@register_method
class MCR(Method):
    name = "mcr"
    settings_toml = "mcr.toml"
    paper = '"Balancing Multimodal Training Through Game-Theoretic Regularization", NeurIPS 2025'
    Hyper = MCRHyper
    modality_logits = "the modality's own unimodal head (multi-loss)"
    fusion_logits = "concat head, sum_m W_m phi^m + b (shared bias)"

    @classmethod
    def validate_params(cls, params, spec):
        super().validate_params(params, spec)
        check_choices(params, _CHOICES)
        if int(params.get("num_samples", 0)) < 1:
            raise ConfigError(f"method.num_samples must be >= 1, got {params.get('num_samples')!r}")
        if not params.get("temperature", 0) > 0:
            raise ConfigError(f"method.temperature must be > 0, got {params.get('temperature')!r}")

    def build_heads(self, feature_dims, num_classes):
        return MCRHeads(feature_dims, num_classes, self.modalities, self.hp.lib > 0)

    def init_from_unimodal(self, model, weights):
        """``--pre``: every encoder and its unimodal head from the unimodal checkpoint; the fused
        head (and the CEB map) keep their fresh initialisation."""
        for m in self.modalities:
            model.encoders[m].load_state_dict(weights[m]["encoder"])
            model.heads.unimodal[m].load_state_dict(weights[m]["head"])

    def _regulariser(self, model, batch, feats, z, ctx):
        """(R_MIPD, the J terms) on the eval-mode pass (or the main features with ``reuse``)."""
        hp = self.hp
        if hp.perm_forward == "eval_pass":
            model.encoders.eval()
            try:
                psi = self.encode(model, batch)
            finally:
                model.encoders.train()
        else:
            psi = feats
        y = batch["label"]
        gen = ctx.generator("mcr/permutations", device="cpu")
        index, rows = draw_permutations(len(y), hp.num_samples, self.modalities, gen, y, hp.shuffle_filter)
        dev = z.device
        index = {m: i.to(dev) for m, i in index.items()}
        blocks = model.heads.blocks()
        q = {m: psi[m].float() @ blocks[m].float().t() for m in self.modalities}
        target = (z.detach() if hp.target_detach else z).float()
        bias = model.heads.fused.fc.bias.float()
        return mipd(
            q, bias, target, index, rows.to(dev), hp.game, hp.lam, hp.divergence, hp.collab_3d_as_released
        )

    def training_step(self, model, batch, ctx):
        """Main forward, CE + w_u unimodal CE, MIPD on the eval-mode pass, NT-Xent, CEB; one
        backward; one step."""
        y, hp = batch["label"], self.hp
        with ctx.autocast():
            feats = self.encode(model, batch)
            logits = model.heads(feats)
        z = logits["fusion"].float()
        ce = F.cross_entropy(z, y)
        ce_u = {m: F.cross_entropy(logits[m].float(), y) for m in self.modalities}
        loss = ce + hp.w_u * sum(ce_u.values())
        out = {"loss_ce": ce.detach()}
        if hp.lam != 0:
            with ctx.autocast():
                reg, terms = self._regulariser(model, batch, feats, z, ctx)
            if hp.add_regularizer:
                loss = loss + reg
            out["mipd"] = reg.detach()
            for (t, e), v in terms.items():
                ctx.log(f"J/{'+'.join(t)}/{e}", v)
        if hp.contr_coeff != 0:
            labels = y if hp.contr_type == "label" else torch.arange(len(y), device=y.device)
            con = nt_xent([feats[m] for m in self.modalities], labels, hp.temperature)
            if hp.add_regularizer:
                loss = loss + hp.contr_coeff * con
            out["contrastive"] = con.detach()
        if hp.lib > 0:
            cat = torch.cat([feats[m].float() for m in self.modalities], dim=1)
            ceb = F.mse_loss(cat, model.heads.ceb(z.detach()))
            loss = loss + hp.lib * ceb
            out["ceb"] = ceb.detach()
        ctx.optimizers.zero_grad()
        loss.backward()
        ctx.optimizers.step()
        out["loss"] = loss.detach()
        for m in self.modalities:
            out[f"loss_{m}"] = ce_u[m].detach()
            out[f"acc_{m}"] = (logits[m].detach().argmax(1) == y).float().mean()
        return out

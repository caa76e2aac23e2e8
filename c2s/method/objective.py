"""The C2S training objective ``L = w_g L_g + w_l L_l + w_p L_p`` (paper Eq. 6) and the eval classifier.

    obj = build_objective(cfg, seen_text)   # seen_text: (Ns, D) L2-normalised, a non-trainable buffer
    obj = C2SObjective(seen_text, loss=LossSettings(...), distill=..., bank=..., latent=..., k_max=8)
    out = obj(F, batch)                     # F: (B, D, h, w) student features
    out["loss"].backward()

The settings (c2s.method.settings) are one frozen dataclass per config section, fields named as the keys;
:func:`build_objective` reads them from a whole config, as open_clip's ``create_loss(args)``.

``batch`` holds the teacher's outputs for the same (augmented) images:

* ``global`` ``(B, D)`` global CLS tokens; ``local`` ``(B, L, D)`` local CLS tokens, one per region of the
  pseudo mask (seen and latent regions), padded; ``local_ids`` ``(B, L)`` int64 region id in pseudo-mask
  id space; ``local_valid`` ``(B, L)`` bool;
* ``pseudo_mask`` ``(B, H, W)`` int64: seen ids in ``[0, Ns)``, latent class ``j`` as ``Ns + j``
  (``j < mining.k_max``), 255 ignore;
* ``label`` ``(B, H, W)`` int64 seen-class labels (seen index space, 255 ignore).

Teacher tokens are detached here: they never receive gradients. Gradients reach the student features,
the latent generator and (``distill.kind=froster``) the residual projector, so the trainer must optimise
``objective.parameters()`` together with the student's.

Table 3 switches: ``distill.enabled`` (L_g, L_l), ``latent.enabled`` (latent logits; off = the pixel loss
is over the seen logits against ``label``). Baseline = both off: only ``label`` is needed then.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.profiler import record_function

from c2s.method.bank import ClsTokenBank
from c2s.method.latent import LatentGenerator
from c2s.method.losses import (
    IGNORE_INDEX,
    PAD_LOGIT,
    FrosterProjector,
    cosine_distill,
    dense_pixel_terms,
    distill_schedule_scale,
    froster_distill,
    global_prototype,
    info_nce,
    l2_distill,
    masked_cross_entropy,
    masked_mean_prototypes,
    nel_loss,
    num_target_masks,
    region_weights,
)
from c2s.method.settings import (
    BankSettings,
    DistillSettings,
    LatentSettings,
    LossSettings,
    check_k_max,
    objective_settings,
)

COMPONENTS = ("loss_global", "loss_local", "loss_pixel", "loss_nel", "loss_ce")


def classify(feats: Tensor, text: Tensor, alpha: float, form: str = "dot") -> Tensor:
    """Evaluation classifier: ``α · Fᵀ A`` (``form="dot"``) or ``α · cos(F, A)`` (``form="cos"``) over the
    text embeddings of all classes (seen + unseen).

    The same form as the training's seen logits ``X_s`` (``loss.seen_logits``), so a class's score is
    comparable whether it was seen or not. ``feats (B, D, h, w)``, ``text (N, D)`` -> ``(B, N, h, w)``.
    """
    if feats.dim() != 4 or text.dim() != 2 or feats.shape[1] != text.shape[1]:
        raise ValueError(f"classify expects feats (B, D, h, w) and text (N, D) with the same D; "
                         f"got {tuple(feats.shape)} and {tuple(text.shape)}")
    if form == "cos":
        feats = F.normalize(feats, dim=1)
    elif form != "dot":
        raise ValueError(f"loss.seen_logits must be 'dot' or 'cos', got {form!r}")
    return alpha * torch.einsum("bdhw,nd->bnhw", feats, text.to(feats.dtype))


def build_objective(cfg: Mapping[str, Any], seen_text: Tensor, *, check_ids: bool = True) -> C2SObjective:
    """The objective of a whole config (the trainer, the tools): ``loss``, ``distill``, ``bank``, ``latent`` and
    ``mining.k_max`` read and checked once (:class:`c2s.method.settings.SettingsError` names a bad key)."""
    return C2SObjective(seen_text, **objective_settings(cfg), check_ids=check_ids)


def _compiled(enabled: bool) -> tuple[Any, Any]:
    """The pixel terms and the logits, compiled with ``loss.compile`` (plain functions, the method unbound and
    called with self: no reference cycle, deepcopy-safe)."""
    if not enabled:
        return dense_pixel_terms, C2SObjective._logits
    return (torch.compile(dense_pixel_terms, dynamic=False, fullgraph=True),
            torch.compile(C2SObjective._logits, dynamic=False))


class C2SObjective(nn.Module):
    """CLIP-to-Seg distillation + latent embedding generation + pixel loss. See the module docstring.

    Args:
        seen_text: ``(Ns, D)`` L2-normalised text embeddings of the seen classes only (inductive setting).
        loss, distill, bank, latent: the settings of those config sections (c2s.method.settings); kept as
            ``self.loss``, ``self.distill``, ``self.latent``.
        k_max: ``mining.k_max``, the latent class slots per image (ids ``Ns + j``, ``j < k_max``).
        check_ids: validate the masks' ids in :meth:`forward`. That reads a flag on the host, a device
            synchronisation when the batch is on a GPU: the training loop calls :meth:`check_batch_ids` on the
            host batch before the copy and passes False.
    """

    def __init__(self, seen_text: Tensor, *, loss: LossSettings, distill: DistillSettings, bank: BankSettings,
                 latent: LatentSettings, k_max: int, check_ids: bool = True) -> None:
        super().__init__()
        if seen_text.dim() != 2:
            raise ValueError(f"seen_text must be (Ns, D), got shape {tuple(seen_text.shape)}")
        self.num_seen, self.dim = (int(s) for s in seen_text.shape)
        # derived from the class list and the text encoder, not learned: kept out of checkpoints
        self.register_buffer("seen_text", seen_text.detach().clone().float(), persistent=False)
        self.loss, self.distill, self.latent = loss, distill, latent
        self.k_max = check_k_max(k_max, self.num_seen, latent.enabled)
        self.check_ids = bool(check_ids)
        # A learnable logit bias shared by every class (seen and latent): NEL's sigmoid terms need absent
        # classes below 0, which X_s = alpha F^T A_s can only reach by an offset in the features themselves
        # (see the config comment). CE and the evaluation argmax are invariant to it.
        self.logit_bias = nn.Parameter(torch.tensor(loss.logit_bias_init)) if loss.learn_logit_bias else None
        self.projector = FrosterProjector(self.dim, distill.froster_hidden, distill.froster_alpha) \
            if distill.kind == "froster" else None
        self.bank = ClsTokenBank(bank.size, self.dim)
        self.generator = LatentGenerator(latent.generator_config(), self.dim) if latent.enabled else None
        # loss.compile: the two parts that run many element-wise kernels over every class map compiled (forward
        # and backward fused by inductor): the logits (X_s, the latent generator, X_u) and the pixel losses at
        # label size. Shapes are fixed in a run (crop, batch, teacher.max_regions): one compilation each.
        # The bank and the DDP collectives stay eager. Measured with c2s bench objective --compile.
        self._pixel_terms, self._logits_fn = _compiled(loss.compile)
        # the multiplier of w_global and w_local at the current step (loss.distill_schedule; 1: the paper)
        self.distill_scale = 1.0

    # ----------------------------------------------------------------------------------------- helpers
    def _get(self, batch: Mapping[str, Tensor], key: str, shape: tuple[int | None, ...]) -> Tensor:
        if key not in batch:
            raise KeyError(f"batch is missing {key!r} (needed with distill.enabled={self.distill.enabled}, "
                           f"latent.enabled={self.latent.enabled}); has {sorted(batch)}")
        value = batch[key]
        if value.dim() != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
            raise ValueError(f"batch[{key!r}] has shape {tuple(value.shape)}, expected "
                             f"{tuple('*' if s is None else s for s in shape)}")
        return value

    def set_progress(self, step: int, total: int) -> None:
        """Before the step ``step`` (0-based) of ``total``: sets :attr:`distill_scale` from
        ``loss.distill_schedule`` (c2s.method.losses.distill_schedule_scale)."""
        self.distill_scale = distill_schedule_scale(self.loss.distill_schedule, step, total)

    def check_batch_ids(self, batch: Mapping[str, Tensor]) -> None:
        """Raise ``ValueError`` naming the key when a mask holds an id out of range: ``pseudo_mask`` in
        ``[0, Ns + k_max)`` when the regions are read (distillation or latent on), ``label`` in ``[0, Ns)`` when
        it is the pixel target (latent off). The checks :meth:`forward` makes itself with ``check_ids=True``;
        a missing key is left to :meth:`forward`, which names what the switches need."""
        if (self.distill.enabled or self.latent.enabled) and "pseudo_mask" in batch:
            self._check_ids("pseudo_mask", batch["pseudo_mask"], self.num_seen + self.k_max)
        if not self.latent.enabled and "label" in batch:
            self._check_ids("label", batch["label"], self.num_seen)

    @staticmethod
    def _check_ids(name: str, mask: Tensor, limit: int) -> None:
        ok = ((mask >= 0) & (mask < limit)) | (mask == IGNORE_INDEX)
        if not bool(ok.all()):
            bad = mask[~ok].unique()[:8].tolist()
            raise ValueError(f"batch[{name!r}] holds ids {bad} outside [0, {limit}) and the ignore index "
                             f"{IGNORE_INDEX}")

    def _pair_loss(self, student: Tensor, teacher: Tensor) -> Tensor:
        if self.distill.kind == "cosine":
            return cosine_distill(student, teacher)
        if self.distill.kind == "l2":
            return l2_distill(student, teacher)
        assert self.projector is not None  # froster
        return froster_distill(student, teacher, self.projector)

    def _global_loss(self, proto: Tensor, token: Tensor) -> Tensor:
        """InfoNCE of each image's ``F_g`` against [the batch's global tokens; the bank] (Eq. 2).

        The bank holds tokens of *previous* steps (this step's are enqueued after the loss), so each
        image's own token is its only positive; the other images of the batch are extra negatives.
        """
        if self.distill.kind != "infonce":
            return self._pair_loss(proto, token)
        # the whole ring with its filled slots as a key mask: no host read of the bank's count
        bank_tokens, filled = self.bank.slots()
        keys = torch.cat([token, bank_tokens.to(token)], dim=0)
        b = token.shape[0]
        key_mask = torch.cat([filled.new_ones(b), filled]).unsqueeze(0).expand(b, -1)
        positive = torch.arange(b, device=token.device)
        return info_nce(proto, keys, positive, self.loss.tau, key_mask=key_mask)

    def _local_loss(self, protos: Tensor, tokens: Tensor, ids: Tensor, valid: Tensor) -> Tensor:
        """Local distillation (Eq. 4) over every valid region slot of the batch.

        Candidates are the local tokens of all valid slots (``distill.local_candidates=batch``) or of the
        same image only (``image``). A token of the *same seen class* in another image is removed from the
        denominator: it is a false negative, not a different concept. Latent ids are per image, so latent
        tokens of other images stay negatives unless ``distill.local_false_negative_cos`` is set: then every
        candidate whose teacher token has at least that cosine with the positive's token is removed too.
        """
        if self.distill.kind != "infonce":  # Table 4's pairwise losses: the valid slots selected
            return self._pair_loss(protos[valid], tokens[valid])
        # InfoNCE over all B*L slots, padding masked out of both sides (fixed shapes: selecting the valid
        # slots would synchronise with the device): invalid slots are neither queries nor candidates.
        b, n_slots = valid.shape
        f, c, cid, ok = protos.flatten(0, 1), tokens.flatten(0, 1), ids.flatten(), valid.flatten()
        img = torch.arange(b, device=valid.device).repeat_interleave(n_slots)
        n = f.shape[0]
        same_img = img.unsqueeze(1) == img.unsqueeze(0)
        eye = torch.eye(n, dtype=torch.bool, device=f.device)
        if self.distill.local_candidates == "image":
            keep = same_img
        else:
            same_seen = (cid.unsqueeze(1) == cid.unsqueeze(0)) & (cid < self.num_seen).unsqueeze(1)
            keep = ~(same_seen & ~same_img)
        if self.distill.local_false_negative_cos is not None:
            unit = F.normalize(c, dim=-1)
            keep = keep & ~(unit @ unit.T >= self.distill.local_false_negative_cos)
        return info_nce(f, c, torch.arange(n, device=f.device), self.loss.tau,
                        key_mask=(keep & ok.unsqueeze(0)) | eye, query_mask=ok)

    # ----------------------------------------------------------------------------------------- forward
    def forward(self, feats: Tensor, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Compute the objective. ``feats (B, D, h, w)``; ``batch`` as in the module docstring.

        Returns ``{'loss', 'loss_global', 'loss_local', 'loss_pixel', 'loss_nel', 'loss_ce'}`` scalars;
        switched-off components are zeros. ``loss`` is the weighted total. Computed in fp32 even under
        autocast: focal/dice/InfoNCE at τ=0.07 lose too much in half precision, and next to the student
        the objective is cheap.
        """
        with torch.autocast(device_type=feats.device.type, enabled=False):
            return self._forward(feats.float(), batch)

    def _regions(self, feats: Tensor, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Validated teacher inputs (detached) and the local prototypes of every region slot."""
        b, _, h, w = feats.shape
        label = self._get(batch, "label", (b, None, None))
        pseudo = self._get(batch, "pseudo_mask", (b, *label.shape[-2:]))
        if self.check_ids:
            self._check_ids("pseudo_mask", pseudo, self.num_seen + self.k_max)
        local = self._get(batch, "local", (b, None, self.dim)).detach()
        n_slots = local.shape[1]
        local_ids = self._get(batch, "local_ids", (b, n_slots))
        local_valid = self._get(batch, "local_valid", (b, n_slots)).bool()
        # Eq. 3 at feature resolution, area-weighted (see region_weights): one einsum for all regions
        protos, area = masked_mean_prototypes(feats, region_weights(pseudo, local_ids, (h, w)))
        return {
            "pseudo": pseudo,
            "global": self._get(batch, "global", (b, self.dim)).detach(),
            "local": local,
            "local_ids": local_ids,
            "protos": protos,
            "slot_valid": local_valid & (area > 0),  # a slot whose region is absent has no prototype
        }

    def _biased(self, logits: Tensor) -> Tensor:
        return logits if self.logit_bias is None else logits + self.logit_bias

    def _logits(self, feats: Tensor, batch: Mapping[str, Tensor],
                reg: dict[str, Tensor] | None) -> tuple[Tensor, Tensor]:
        """Feature-resolution logits ``(B, Ns [+ K], h, w)`` and the pixel target ``(B, H, W)``."""
        loss = self.loss
        seen_logits = classify(feats, self.seen_text, loss.alpha, loss.seen_logits)  # X_s: (B, Ns, h, w)
        if not self.latent.enabled:
            label = self._get(batch, "label", (feats.shape[0], None, None))
            if self.check_ids:
                self._check_ids("label", label, self.num_seen)
            return self._biased(seen_logits), label
        assert self.generator is not None and reg is not None
        pseudo, local, slot_valid = reg["pseudo"], reg["local"], reg["slot_valid"]
        latent_ids = self.num_seen + torch.arange(self.k_max, device=feats.device)
        match = (reg["local_ids"].unsqueeze(-1) == latent_ids) & slot_valid.unsqueeze(-1)  # (B, L, K)
        latent_valid = match.any(dim=1)  # (B, K): region present in the pseudo mask and has a token
        slot = match.int().argmax(dim=1)  # (B, K) index of each latent region's local slot
        gather = slot.unsqueeze(-1).expand(-1, -1, self.dim)
        embeds = self.generator(
            torch.gather(reg["protos"], 1, gather), torch.gather(local, 1, gather), latent_valid,
            reg["global"], local, slot_valid,
        )  # A'_u: (B, K, D)
        cos = torch.einsum("bdhw,bkd->bkhw", F.normalize(feats, dim=1), F.normalize(embeds, dim=-1))
        # the shared bias goes on before the padding, so padded classes stay exactly at PAD_LOGIT
        latent_logits = self._biased(loss.beta * cos).masked_fill(~latent_valid[:, :, None, None], PAD_LOGIT)
        # latent pixels without a generated embedding cannot be supervised: ignore them
        is_latent = (pseudo >= self.num_seen) & (pseudo != IGNORE_INDEX)
        j = (pseudo - self.num_seen).clamp(0, self.k_max - 1).flatten(1)
        has_embed = torch.gather(latent_valid, 1, j).view_as(pseudo)
        target = torch.where(is_latent & ~has_embed, torch.full_like(pseudo, IGNORE_INDEX), pseudo)
        return torch.cat([self._biased(seen_logits), latent_logits], dim=1), target

    @torch.no_grad()
    def pixel_logits(self, feats: Tensor, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """For inspection: the logits the pixel loss sees, ``cat(X_s, X_u)`` upsampled to label size
        ``(B, Ns [+ K], H, W)`` (padded latent classes at ``PAD_LOGIT``), and its target ``(B, H, W)``."""
        feats = feats.float()
        reg = self._regions(feats, batch) if self.latent.enabled else None
        logits, target = self._logits(feats, batch, reg)
        return F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False), target

    def _pixel_loss(self, logits: Tensor, target: Tensor) -> tuple[Tensor | None, Tensor]:
        """L_p's weighted terms (Eq. 5): NEL (None without ``loss.use_nel``) and CE, scalars. ``logits``
        ``(B, C, h, w)`` are upsampled bilinearly to the target's ``(B, H, W)`` once, for both losses."""
        loss = self.loss
        if loss.use_nel and loss.nel_mode == "present":  # c2s's earlier reading: selects maps, not compiled
            size = tuple(target.shape[-2:])
            if tuple(logits.shape[-2:]) != size:
                logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
            focal, dice = nel_loss(logits, target, IGNORE_INDEX, loss.focal_alpha, loss.focal_gamma, "present")
            ce = masked_cross_entropy(logits, target)
        else:
            ce, focal, dice, count = self._pixel_terms(logits, target, IGNORE_INDEX, loss.focal_alpha,
                                                       loss.focal_gamma, loss.use_nel)
            if loss.use_nel:  # the normaliser is summed over DDP workers: outside the compiled part
                num_masks = num_target_masks(count)
                focal, dice = focal / num_masks, dice / num_masks
        nel = loss.nel_focal_weight * focal + loss.nel_dice_weight * dice if loss.use_nel else None
        return nel, loss.ce_weight * ce

    def _forward(self, feats: Tensor, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if feats.dim() != 4 or feats.shape[1] != self.dim:
            raise ValueError(f"student features must be (B, {self.dim}, h, w), got {tuple(feats.shape)}")
        # record_function labels name each part in a profile (`c2s bench objective --profile`); free otherwise
        out = dict.fromkeys(COMPONENTS, feats.new_zeros(()))
        with record_function("c2s.objective.regions"):
            reg = self._regions(feats, batch) if self.distill.enabled or self.latent.enabled else None
        if self.distill.enabled:
            assert reg is not None
            with record_function("c2s.objective.global"):
                proto = global_prototype(feats, reg["global"], self.distill.global_pool,
                                         self.distill.global_attn_tau)
                out["loss_global"] = self._global_loss(proto, reg["global"])
            with record_function("c2s.objective.local"):
                out["loss_local"] = self._local_loss(reg["protos"], reg["local"], reg["local_ids"],
                                                     reg["slot_valid"])

        with record_function("c2s.objective.logits"):  # X_s, and the latent generator's X_u
            logits, target = self._logits_fn(self, feats, batch, reg)
        with record_function("c2s.objective.pixel"):
            nel, out["loss_ce"] = self._pixel_loss(logits, target)
            if nel is not None:
                out["loss_nel"] = nel
        out["loss_pixel"] = out["loss_nel"] + out["loss_ce"]
        distill = self.loss.w_global * out["loss_global"] + self.loss.w_local * out["loss_local"]
        out["loss"] = self.distill_scale * distill + self.loss.w_pixel * out["loss_pixel"]
        if self.distill.enabled and self.training:
            # after the loss: the bank holds previous steps only. Last in the step: under DDP the gather reads
            # the workers' batch sizes back to the host, and here that read waits on nothing the GPU still has
            # to start (the training loop reads the losses right after anyway).
            self.bank.enqueue(reg["global"])
        return out

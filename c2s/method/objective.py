"""The C2S training objective ``L = w_g L_g + w_l L_l + w_p L_p`` (paper Eq. 6) and the eval classifier.

    obj = C2SObjective(cfg, seen_text)      # seen_text: (Ns, D) L2-normalised, a non-trainable buffer
    out = obj(F, batch)                     # F: (B, D, h, w) student features
    out["loss"].backward()

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
    DISTILL_KINDS,
    GLOBAL_POOLS,
    IGNORE_INDEX,
    NEL_MODES,
    PAD_LOGIT,
    FrosterProjector,
    cosine_distill,
    dense_pixel_terms,
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

COMPONENTS = ("loss_global", "loss_local", "loss_pixel", "loss_nel", "loss_ce")
LOCAL_CANDIDATES = ("batch", "image")


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


def _section(cfg: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    try:
        return cfg[name]
    except KeyError:
        raise KeyError(f"config section {name!r} is missing; C2SObjective needs loss, bank, distill, latent "
                       f"and mining.k_max (see c2s/configs/_base_/method.py)") from None


def _key(section: Mapping[str, Any], name: str, key: str) -> Any:
    try:
        return section[key]
    except KeyError:
        raise KeyError(f"config key '{name}.{key}' is missing (see c2s/configs/_base_/method.py)") from None


class C2SObjective(nn.Module):
    """CLIP-to-Seg distillation + latent embedding generation + pixel loss. See the module docstring.

    Args:
        cfg: the full resolved config (uses ``loss``, ``bank``, ``distill``, ``latent``, ``mining.k_max``).
        seen_text: ``(Ns, D)`` L2-normalised text embeddings of the seen classes only (inductive setting).
    """

    def __init__(self, cfg: Mapping[str, Any], seen_text: Tensor, check_ids: bool = True) -> None:
        super().__init__()
        # Validating the masks' ids reads a flag on the host: a device synchronisation when the batch is on a
        # GPU. The training loop calls check_batch_ids on the host batch before the copy and passes False.
        self.check_ids = bool(check_ids)
        loss, bank, distill, latent = (_section(cfg, n) for n in ("loss", "bank", "distill", "latent"))
        if seen_text.dim() != 2:
            raise ValueError(f"seen_text must be (Ns, D), got shape {tuple(seen_text.shape)}")
        self.num_seen, self.dim = (int(s) for s in seen_text.shape)
        # derived from the class list and the text encoder, not learned: kept out of checkpoints
        self.register_buffer("seen_text", seen_text.detach().clone().float(), persistent=False)

        self.tau = float(_key(loss, "loss", "tau"))
        self.alpha = float(_key(loss, "loss", "alpha"))
        self.seen_form = str(_key(loss, "loss", "seen_logits"))
        self.beta = float(_key(loss, "loss", "beta"))
        self.w_global = float(_key(loss, "loss", "w_global"))
        self.w_local = float(_key(loss, "loss", "w_local"))
        self.w_pixel = float(_key(loss, "loss", "w_pixel"))
        self.use_nel = bool(_key(loss, "loss", "use_nel"))
        self.nel_mode = str(loss.get("nel_mode", "zegclip"))
        if self.nel_mode not in NEL_MODES:
            raise ValueError(f"config key 'loss.nel_mode' must be one of {', '.join(NEL_MODES)}; got {self.nel_mode!r}")
        self.nel_focal_weight = float(_key(loss, "loss", "nel_focal_weight"))
        self.nel_dice_weight = float(_key(loss, "loss", "nel_dice_weight"))
        self.focal_alpha = float(_key(loss, "loss", "focal_alpha"))
        self.focal_gamma = float(_key(loss, "loss", "focal_gamma"))
        self.ce_weight = float(_key(loss, "loss", "ce_weight"))
        self.compiled = bool(loss.get("compile", False))
        if self.tau <= 0:
            raise ValueError(f"config key 'loss.tau' must be > 0, got {self.tau}")
        # A learnable logit bias shared by every class (seen and latent): NEL's sigmoid terms need absent
        # classes below 0, which X_s = alpha F^T A_s can only reach by an offset in the features themselves
        # (see the config comment). CE and the evaluation argmax are invariant to it.
        self.logit_bias: nn.Parameter | None = None
        if bool(loss.get("learn_logit_bias", False)):
            self.logit_bias = nn.Parameter(torch.tensor(float(loss.get("logit_bias_init", 0.0))))

        self.distill_enabled = bool(_key(distill, "distill", "enabled"))
        self.distill_kind = _key(distill, "distill", "kind")
        if self.distill_kind not in DISTILL_KINDS:
            raise ValueError(f"config key 'distill.kind' must be one of {', '.join(DISTILL_KINDS)}; "
                             f"got {self.distill_kind!r}")
        self.global_pool = str(distill.get("global_pool", "paper"))
        if self.global_pool not in GLOBAL_POOLS:
            raise ValueError(f"config key 'distill.global_pool' must be one of {', '.join(GLOBAL_POOLS)}; "
                             f"got {self.global_pool!r}")
        self.global_attn_tau = float(distill.get("global_attn_tau", 0.07))
        self.local_candidates = distill.get("local_candidates", "batch")
        if self.local_candidates not in LOCAL_CANDIDATES:
            raise ValueError(f"config key 'distill.local_candidates' must be one of {', '.join(LOCAL_CANDIDATES)}; "
                             f"got {self.local_candidates!r}")
        # Drop from the local InfoNCE's denominator every candidate whose teacher token is this close (cosine)
        # to the positive's: the same concept in another region (a latent region's id is per image, so the
        # same unseen object in two images is otherwise a negative). None = the paper's literal Eq. 4.
        fn_cos = distill.get("local_false_negative_cos")
        self.local_fn_cos = None if fn_cos is None else float(fn_cos)
        if self.local_fn_cos is not None and not -1.0 <= self.local_fn_cos <= 1.0:
            raise ValueError(f"config key 'distill.local_false_negative_cos' must be a cosine in [-1, 1] or None; "
                             f"got {fn_cos!r}")
        self.projector: FrosterProjector | None = None
        if self.distill_kind == "froster":
            self.projector = FrosterProjector(self.dim, int(_key(distill, "distill", "froster_hidden")),
                                              float(distill.get("froster_alpha", 0.1)))

        self.bank = ClsTokenBank(int(_key(bank, "bank", "size")), self.dim)

        self.latent_enabled = bool(_key(latent, "latent", "enabled"))
        try:
            self.k_max = int(cfg["mining"]["k_max"])
        except KeyError:
            raise KeyError("config key 'mining.k_max' is missing (see c2s/configs/_base_/teacher.py)") from None
        if self.latent_enabled and self.num_seen + self.k_max > IGNORE_INDEX:
            raise ValueError(f"{self.num_seen} seen classes + mining.k_max={self.k_max} latent ids collide with "
                             f"the ignore index {IGNORE_INDEX}")
        self.generator = LatentGenerator(latent, self.dim) if self.latent_enabled else None

        # loss.compile: the two parts that run many element-wise kernels over every class map compiled (forward
        # and backward fused by inductor): the logits (X_s, the latent generator, X_u) and the pixel losses at
        # label size. Shapes are fixed in a run (crop, batch, teacher.max_regions): one compilation each.
        # The bank and the DDP collectives stay eager. Measured with c2s bench objective --compile.
        # Plain functions (the method unbound, called with self): no reference cycle, deepcopy-safe.
        self._pixel_terms = dense_pixel_terms
        self._logits_fn = C2SObjective._logits
        if self.compiled:
            self._pixel_terms = torch.compile(dense_pixel_terms, dynamic=False, fullgraph=True)
            self._logits_fn = torch.compile(C2SObjective._logits, dynamic=False)

    # ----------------------------------------------------------------------------------------- helpers
    def _get(self, batch: Mapping[str, Tensor], key: str, shape: tuple[int | None, ...]) -> Tensor:
        if key not in batch:
            raise KeyError(f"batch is missing {key!r} (needed with distill.enabled={self.distill_enabled}, "
                           f"latent.enabled={self.latent_enabled}); has {sorted(batch)}")
        value = batch[key]
        if value.dim() != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
            raise ValueError(f"batch[{key!r}] has shape {tuple(value.shape)}, expected "
                             f"{tuple('*' if s is None else s for s in shape)}")
        return value

    def check_batch_ids(self, batch: Mapping[str, Tensor]) -> None:
        """Raise ``ValueError`` naming the key when a mask holds an id out of range: ``pseudo_mask`` in
        ``[0, Ns + k_max)`` when the regions are read (distillation or latent on), ``label`` in ``[0, Ns)`` when
        it is the pixel target (latent off). The checks :meth:`forward` makes itself with ``check_ids=True``;
        a missing key is left to :meth:`forward`, which names what the switches need."""
        if (self.distill_enabled or self.latent_enabled) and "pseudo_mask" in batch:
            self._check_ids("pseudo_mask", batch["pseudo_mask"], self.num_seen + self.k_max)
        if not self.latent_enabled and "label" in batch:
            self._check_ids("label", batch["label"], self.num_seen)

    @staticmethod
    def _check_ids(name: str, mask: Tensor, limit: int) -> None:
        ok = ((mask >= 0) & (mask < limit)) | (mask == IGNORE_INDEX)
        if not bool(ok.all()):
            bad = mask[~ok].unique()[:8].tolist()
            raise ValueError(f"batch[{name!r}] holds ids {bad} outside [0, {limit}) and the ignore index "
                             f"{IGNORE_INDEX}")

    def _pair_loss(self, student: Tensor, teacher: Tensor) -> Tensor:
        if self.distill_kind == "cosine":
            return cosine_distill(student, teacher)
        if self.distill_kind == "l2":
            return l2_distill(student, teacher)
        assert self.projector is not None  # froster
        return froster_distill(student, teacher, self.projector)

    def _global_loss(self, proto: Tensor, token: Tensor) -> Tensor:
        """InfoNCE of each image's ``F_g`` against [the batch's global tokens; the bank] (Eq. 2).

        The bank holds tokens of *previous* steps (this step's are enqueued after the loss), so each
        image's own token is its only positive; the other images of the batch are extra negatives.
        """
        if self.distill_kind != "infonce":
            return self._pair_loss(proto, token)
        # the whole ring with its filled slots as a key mask: no host read of the bank's count
        bank_tokens, filled = self.bank.slots()
        keys = torch.cat([token, bank_tokens.to(token)], dim=0)
        b = token.shape[0]
        key_mask = torch.cat([filled.new_ones(b), filled]).unsqueeze(0).expand(b, -1)
        positive = torch.arange(b, device=token.device)
        return info_nce(proto, keys, positive, self.tau, key_mask=key_mask)

    def _local_loss(self, protos: Tensor, tokens: Tensor, ids: Tensor, valid: Tensor) -> Tensor:
        """Local distillation (Eq. 4) over every valid region slot of the batch.

        Candidates are the local tokens of all valid slots (``distill.local_candidates=batch``) or of the
        same image only (``image``). A token of the *same seen class* in another image is removed from the
        denominator: it is a false negative, not a different concept. Latent ids are per image, so latent
        tokens of other images stay negatives unless ``distill.local_false_negative_cos`` is set: then every
        candidate whose teacher token has at least that cosine with the positive's token is removed too.
        """
        if self.distill_kind != "infonce":  # Table 4's pairwise losses: the valid slots selected
            return self._pair_loss(protos[valid], tokens[valid])
        # InfoNCE over all B*L slots, padding masked out of both sides (fixed shapes: selecting the valid
        # slots would synchronise with the device): invalid slots are neither queries nor candidates.
        b, n_slots = valid.shape
        f, c, cid, ok = protos.flatten(0, 1), tokens.flatten(0, 1), ids.flatten(), valid.flatten()
        img = torch.arange(b, device=valid.device).repeat_interleave(n_slots)
        n = f.shape[0]
        same_img = img.unsqueeze(1) == img.unsqueeze(0)
        eye = torch.eye(n, dtype=torch.bool, device=f.device)
        if self.local_candidates == "image":
            keep = same_img
        else:
            same_seen = (cid.unsqueeze(1) == cid.unsqueeze(0)) & (cid < self.num_seen).unsqueeze(1)
            keep = ~(same_seen & ~same_img)
        if self.local_fn_cos is not None:
            unit = F.normalize(c, dim=-1)
            keep = keep & ~(unit @ unit.T >= self.local_fn_cos)
        return info_nce(f, c, torch.arange(n, device=f.device), self.tau, key_mask=(keep & ok.unsqueeze(0)) | eye,
                        query_mask=ok)

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

    def _logits(self, feats: Tensor, batch: Mapping[str, Tensor], reg: dict[str, Tensor] | None) -> tuple[Tensor, Tensor]:
        """Feature-resolution logits ``(B, Ns [+ K], h, w)`` and the pixel target ``(B, H, W)``."""
        seen_logits = classify(feats, self.seen_text, self.alpha, self.seen_form)  # X_s: (B, Ns, h, w)
        if not self.latent_enabled:
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
        latent_logits = self._biased(self.beta * cos).masked_fill(~latent_valid[:, :, None, None], PAD_LOGIT)
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
        reg = self._regions(feats, batch) if self.latent_enabled else None
        logits, target = self._logits(feats, batch, reg)
        return F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False), target

    def _forward(self, feats: Tensor, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if feats.dim() != 4 or feats.shape[1] != self.dim:
            raise ValueError(f"student features must be (B, {self.dim}, h, w), got {tuple(feats.shape)}")
        # record_function labels name each part in a profile (`c2s bench objective --profile`); free otherwise
        out = dict.fromkeys(COMPONENTS, feats.new_zeros(()))
        with record_function("c2s.objective.regions"):
            reg = self._regions(feats, batch) if self.distill_enabled or self.latent_enabled else None
        if self.distill_enabled:
            assert reg is not None
            with record_function("c2s.objective.global"):
                proto = global_prototype(feats, reg["global"], self.global_pool, self.global_attn_tau)
                out["loss_global"] = self._global_loss(proto, reg["global"])
            with record_function("c2s.objective.local"):
                out["loss_local"] = self._local_loss(reg["protos"], reg["local"], reg["local_ids"],
                                                     reg["slot_valid"])

        with record_function("c2s.objective.logits"):  # X_s, and the latent generator's X_u
            logits, target = self._logits_fn(self, feats, batch, reg)
        # Both pixel losses see the logits upsampled bilinearly to label resolution, upsampled once.
        with record_function("c2s.objective.pixel"):
            if self.use_nel and self.nel_mode == "present":  # c2s's earlier reading: selects maps, not compiled
                size = tuple(target.shape[-2:])
                if tuple(logits.shape[-2:]) != size:
                    logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
                focal, dice = nel_loss(logits, target, IGNORE_INDEX, self.focal_alpha, self.focal_gamma, "present")
                ce = masked_cross_entropy(logits, target)
            else:
                ce, focal, dice, count = self._pixel_terms(logits, target, IGNORE_INDEX, self.focal_alpha,
                                                           self.focal_gamma, self.use_nel)
                if self.use_nel:  # the normaliser is summed over DDP workers: outside the compiled part
                    num_masks = num_target_masks(count)
                    focal, dice = focal / num_masks, dice / num_masks
            if self.use_nel:
                out["loss_nel"] = self.nel_focal_weight * focal + self.nel_dice_weight * dice
            out["loss_ce"] = self.ce_weight * ce
        out["loss_pixel"] = out["loss_nel"] + out["loss_ce"]
        out["loss"] = (self.w_global * out["loss_global"] + self.w_local * out["loss_local"]
                       + self.w_pixel * out["loss_pixel"])
        if self.distill_enabled and self.training:
            # after the loss: the bank holds previous steps only. Last in the step: under DDP the gather reads
            # the workers' batch sizes back to the host, and here that read waits on nothing the GPU still has
            # to start (the training loop reads the losses right after anyway).
            self.bank.enqueue(reg["global"])
        return out

# The C2S objective (paper Sec. 3.2-3.4). Every knob here is reachable by its dotted name.
loss = dict(
    tau=0.07,  # InfoNCE temperature of the global and local distillation (Eqs. 2 and 4), on cosine similarities
    # Scale of the seen logits X_s = alpha * F^T A_s (paper: plain dot product with unnormalised F). The
    # student's last 1x1 projection learns the feature norm, i.e. the effective logit scale, so 1 suffices;
    # evaluation (c2s.method.objective.classify) uses the same alpha for seen and unseen text.
    alpha=1.0,
    # Form of X_s and of the evaluation classifier: "dot" (the paper's F^T A_s) or "cos" (alpha * cos(F, A)).
    # With "dot" the student can separate seen classes with features nearly orthogonal to every text
    # embedding (measured on the toy world: cos <= 0.05), which leaves unseen text free to win at test time.
    seen_logits="dot",
    # Scale of the latent logits X_u = beta * cos(F, A'_u). Cosines live in [-1, 1]; beta=10 lets a latent
    # class reach a softmax margin comparable to the learned seen logits without CLIP's sharp 100x scale,
    # which would over-trust the imperfect pseudo masks the paper warns about (Sec. 3.3).
    beta=10.0,
    w_global=1.0,  # weight of L_g in L = w_g L_g + w_l L_l + w_p L_p (Eq. 6: all 1)
    w_local=1.0,  # weight of L_l
    w_pixel=1.0,  # weight of L_p
    use_nel=True,  # L_p = NEL + CE (Eq. 5); False leaves CE only
    # NEL as ZegCLIP computes it (models/losses/criterion.py): "zegclip" = focal over ALL class maps and all
    # pixels (absent classes and ignore pixels are negatives), dice over the classes present; "present" =
    # c2s's earlier reading (present classes and non-ignored pixels only). See c2s.method.losses.nel_loss.
    nel_mode="zegclip",
    nel_focal_weight=100.0,  # ZegCLIP's mask_weight (focal term of NEL)
    nel_dice_weight=1.0,  # ZegCLIP's dice_weight
    focal_alpha=0.25,  # sigmoid focal loss alpha (ZegCLIP)
    focal_gamma=2.0,  # sigmoid focal loss gamma (ZegCLIP)
    ce_weight=1.0,  # weight of the cross-entropy term of L_p
    # torch.compile the pixel losses (upsampling to label size, NEL in "zegclip" mode, CE): the element-wise
    # work over all class maps at label size fuses into a few kernels, forward and backward. Off by default,
    # as open_clip's --torchcompile and torchtune's compile: the first step pays the compilation (CPU, 2 cores:
    # ~20 s) and the eager path is the reference. Measured: c2s bench objective --compile (see the README).
    compile=False,
    # A learnable logit bias shared by all pixel logits (seen + latent), initialised at logit_bias_init.
    # Not in the paper (X_s = alpha F^T A_s has none); CE and the evaluation argmax do not depend on it.
    # Why on (issue 13; tools/offline_c2s.py, toy world, seed 0, 300 steps, 3-epoch token cache, paper weights,
    # sIoU / uIoU / hIoU): without it ZegCLIP's NEL can only push every absent class down through a feature
    # component shared by all pixels, which acts as a per-class bias (mean feature norm 62 vs pixel median 64,
    # seen classes' mean logit -5.2 vs unseen -4.2): 87% of seen pixels went to an unseen class, 4.0 / 19.7 /
    # 6.7, and L_g ended at 2.16. With it: 24.2 / 12.1 / 16.1, seen->unseen 17%, L_g 0.93, shared offset 0.25
    # of the pixel norm. (model.center_features removes the offset structurally: 24.2 / 10.2 / 14.3; centring
    # without this bias leaves NEL stuck at 29.5 after 100 steps.)
    learn_logit_bias=True,
    # The focal loss's prior initialisation (Lin et al. 2017, Sec. 4.1): -log((1 - pi) / pi), pi = 0.01, so
    # every class starts "absent" and the first steps are not spent pushing all maps down.
    logit_bias_init=-4.595,
)
# CLS token bank: FIFO of the last `size` global CLS tokens (paper: 24), the extra negatives of L_g.
# Under DDP each step enqueues the tokens of all workers. 0 disables it (batch negatives only).
bank = dict(size=24)
distill = dict(
    enabled=True,  # Table 3 "+ distillation": L_g and L_l on/off
    kind="infonce",  # Table 4: infonce (the paper's) | cosine | l2 | froster
    froster_hidden=512,  # hidden width of FROSTER's residual MLP projector (kind=froster only)
    froster_alpha=0.1,  # residual scale a in z' = z + a * MLP(z) (kind=froster only)
    # Negatives of the local InfoNCE: batch (all regions of the batch; the same seen class in another image
    # is dropped from the denominator as a false negative) | image (only the regions of the same image).
    local_candidates="batch",
    # Teacher-token cosine at or above which a local candidate counts as the positive's own concept and leaves
    # the denominator (c2s.method.objective.C2SObjective._local_loss). null = the paper's literal Eq. 4.
    # Measured on the toy token cache: 74 of a batch's 114 regions are latent, and the same unseen object in
    # two images has token cosine ~0.998, so Eq. 4 pushes its prototypes apart: with prototypes equal to the
    # tokens L_l is 2.60 (0.68 at 0.95). Trained (probe as above, bias + cosine pool): L_l 3.27 -> 1.19 at
    # step 300; segmentation 35.6 / 18.3 / 24.2 -> 35.0 / 15.6 / 21.5 (one seed, within its noise).
    local_false_negative_cos=0.95,
    # Attention pooling of the global prototype F_g (c2s.method.losses.global_prototype): paper (the
    # literal softmax(C_g^T F / sqrt(D)) F^T) | centered (on F minus the batch's mean feature) | cosine
    # (softmax(cos(C_g, f) / global_attn_tau)).
    # cosine is the default (issue 13, same probe as loss.learn_logit_bias, both with the bias): with "paper"
    # the attention was near uniform (99.5% of positions effective) since C_g^T F / sqrt(D) is small, so F_g
    # was the image's mean feature: 24.2 / 12.1 / 16.1; "cosine": 12% of positions, L_g 0.93 -> 0.64,
    # 35.6 / 18.3 / 24.2.
    global_pool="cosine",
    global_attn_tau=0.07,
)
# Latent embedding generator (Sec. 3.3, Tables 5-6).
latent = dict(
    enabled=True,  # Table 3 "+ latent embedding": latent logits X_u and pseudo-mask supervision on/off
    kind="transformer",  # none (A'_u = the input itself) | mlp (residual MLP) | transformer (decoder)
    inputs="both",  # prototypes | cls_tokens (the region's own local token) | both (queries=prototypes, K/V=tokens)
    cls_tokens="both",  # keys/values of the decoder: global | local | both (Table 5)
    num_layers=1,  # transformer decoder layers
    num_heads=8,  # attention heads; must divide the embedding dim
    ffn_ratio=4,  # FFN width (decoder and MLP calibrator) = ffn_ratio * D
    dropout=0.0,  # dropout inside the decoder
)

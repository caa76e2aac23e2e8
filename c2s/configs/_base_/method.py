# The C2S objective (paper Sec. 3.2-3.4). Every knob here is reachable by its dotted name.
loss = dict(
    # InfoNCE temperature of the global and local distillation (Eqs. 2 and 4), on cosine similarities. The paper
    # gives no value; 0.07 is CLIP's initial temperature.
    tau=0.07,
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
    # w_global and w_local over the run: constant (the paper), or decayed to 0 by the last step, linear | cosine.
    # Kept at the paper; decayed, the toy world's late deficit goes (docs/decisions.md#distillation-schedule)
    distill_schedule="constant",
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
    # torch.compile the logits and the label-size pixel losses (fused kernels, forward and backward). Off,
    # as open_clip's --torchcompile: the first step pays the compilation (docs/decisions.md#compiled-losses)
    compile=False,
    # off-paper (X_s has no bias): without it NEL biased classes through F (docs/decisions.md#logit-bias)
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
    # off-paper (null: Eq. 4): a region's own concept is no negative (docs/decisions.md#local-false-negatives)
    local_false_negative_cos=0.95,
    # off-paper (paper | centered | cosine): the paper's attention was flat (docs/decisions.md#global-pooling)
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

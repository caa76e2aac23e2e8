# The C2S objective (paper Sec. 3.2-3.4). Every knob here is reachable by its dotted name.
loss = dict(
    tau=0.07,  # InfoNCE temperature of the global and local distillation (Eqs. 2 and 4)
    alpha=1.0,  # scale of the seen logits X_s = alpha * F^T A_s
    beta=10.0,  # scale of the latent logits X_u = beta * cos(F, A'_u)
    w_global=1.0,  # weight of L_g in L = w_g L_g + w_l L_l + w_p L_p (Eq. 6: all 1)
    w_local=1.0,
    w_pixel=1.0,
    use_nel=True,  # L_p = NEL + CE (Eq. 5); False leaves CE only
    nel_focal_weight=100.0,  # ZegCLIP's mask_weight
    nel_dice_weight=1.0,
    focal_alpha=0.25,
    focal_gamma=2.0,
    ce_weight=1.0,
)
# CLS token bank: FIFO of the last `size` global CLS tokens (paper: 24).
bank = dict(size=24)
# Distillation (Table 3 "+ distillation", Table 4 alternatives): infonce | cosine | l2 | froster.
distill = dict(enabled=True, kind="infonce", froster_hidden=512)
# Latent embedding generator (Sec. 3.3, Tables 5-6).
#   kind: none (A'_u = the input itself) | mlp | transformer
#   inputs: prototypes | cls_tokens | both ; cls_tokens: global | local | both (Table 5)
latent = dict(enabled=True, kind="transformer", inputs="both", cls_tokens="both", num_layers=1, num_heads=8,
              ffn_ratio=4, dropout=0.0)

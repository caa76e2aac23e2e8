# Table 3 "baseline": seen-class pixel loss only (no distillation, no latent embeddings).
_base_ = ["./toy_c2s.py"]
distill = dict(enabled=False)
latent = dict(enabled=False)

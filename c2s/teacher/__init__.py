"""The frozen CLIP teacher: loading, text embeddings, dense/global/local tokens, latent class mining."""

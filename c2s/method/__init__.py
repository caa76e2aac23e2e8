"""The C2S method in pure PyTorch: losses, CLS token bank, latent embedding generator, objective.

Knows nothing of Ray; ``c2s.train`` calls :class:`c2s.method.objective.C2SObjective` on each worker.
"""

"""Benchmarks routed by ``c2s bench ...``; each module has ``main(argv) -> int`` and prints a JSON line last."""

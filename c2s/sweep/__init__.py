"""Sweeps: YAML specs (``spec``), Parquet result tables (``tables``) and paper-shaped reports (``report``).

Importable without Ray; Ray is imported only where a Tune object is built.
"""

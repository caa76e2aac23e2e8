"""`c2s bench serve` end to end, small: both modes answer every request right (the batched answers checked
against the unbatched ones), the JSON line comes last and holds what the docs say. Speed is not asserted:
it is measured (docs/serve.md), not tested. Runs after test_serve_app.py has shut its Serve down (the bench
starts Serve with its own port on the session's Ray)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration


def test_bench_serve_small(ray_local, capsys):
    from c2s.bench.serve import main

    rc = main(["--clients", "4", "--requests", "12", "--rounds", "2", "--warmup", "4", "--images", "4",
               "--batch-wait-s", "0.05"])
    out = capsys.readouterr()
    assert rc == 0, out.err[-2000:]
    lines = out.out.strip().splitlines()
    result = json.loads(lines[-1])
    assert [line.split(":")[0].split()[-1] for line in lines[:-1] if line.startswith("[bench serve]")] == [
        "unbatched", "batched"] * 2  # rounds alternate
    for mode in ("unbatched", "batched"):
        r = result[mode]
        assert (r["requests"], r["ok"], r["errors"], r["lost"]) == (24, 24, 0, 0), r
        assert r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] and r["images_per_s"] > 0
        assert len(r["images_per_s_rounds"]) == 2
    assert result["unbatched"]["mean_batch"] == 1.0 and result["batched"]["mean_batch"] > 1.0
    assert result["speedup"] > 0 and len(result["speedup_rounds"]) == 2 and result["speedup_of_medians"] > 0
    assert result["goal"]["speedup_at_least"] == 1.5
    assert result["environment"]["cpu_count"] >= 1


def test_bench_serve_refuses_bad_options():
    from c2s.bench.serve import main
    from c2s.serve.settings import ServeError

    with pytest.raises(ServeError, match="--max-batch-size 1: the batched mode needs 2 or more"):
        main(["--max-batch-size", "1"])
    with pytest.raises(ServeError, match="--clients must be >= 1"):
        main(["--clients", "0"])

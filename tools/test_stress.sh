#!/usr/bin/env bash
# `make test-stress`: the integration and multi-node tests under a background CPU load - the conditions under
# which the suite's flakes appeared (a loaded 2-core machine: Ray's head, agent and dashboard slow to come up).
# One busy process per STRESS_CORES (default 1), each bounded by STRESS_MAX_S (default 3600 s) and stopped
# when the tests end, however they end. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
cores=${STRESS_CORES:-1}
max_s=${STRESS_MAX_S:-3600}
pids=()
stop_load() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop_load EXIT
for _ in $(seq "$cores"); do
    timeout "$max_s" "$PY" -c "while True: pass" &
    pids+=($!)
done
echo "[stress] ${cores} busy process(es) (pids ${pids[*]}), each stopped after at most ${max_s} s"
start=$SECONDS
rc=0
"$PY" -m pytest -q --timeout=900 --durations=25 -m "(integration or multinode) and not gpu" "$@" || rc=$?
echo "[stress] tests: $((SECONDS - start)) s under load (exit ${rc})"
exit "$rc"

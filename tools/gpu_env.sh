# Sourced by the GPU scripts (tools/gpu_check.sh, tools/gpu_sweeps.sh) from the repository root: sets PY,
# C2S_CACHE (default /tmp/c2s-gpu-cache) and PYTHONPATH, and installs the wheels under .whl/ (see
# tools/gpu_check.sh's header for which and how they were fetched) to /tmp/site when there are any.
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 C2S_CACHE=${C2S_CACHE:-/tmp/c2s-gpu-cache}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if compgen -G ".whl/*.whl" > /dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "wheel install failed"; return 1; }
    export PYTHONPATH=$PWD:/tmp/site
fi

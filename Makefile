# Two entry points for a new user: `make demo` (set up, then run the main job on the bundled
# MiniLM) and `make test` (set up, then run the test suite). Both share `make setup`, which
# only reinstalls when pyproject.toml or this Makefile changed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch is installed first so that nothing later pulls a multi-GB CUDA build.
# Elsewhere, point TORCH_INDEX at https://download.pytorch.org/whl/cpu to get the CPU wheel.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
# inc and calibration: the Neural Compressor and datasets paths of `quantize` are tested too
# (together ~10 s to install, pip check clean).
EXTRAS ?= ort,openvino,openvino-quant,test,inc,calibration
STAMP := $(VENV)/.optibridge-installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	$(PY) -m pip check
	touch $(STAMP)

demo: setup
	HF_HUB_OFFLINE=1 $(PY) examples/demo.py

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(PYTEST_ARGS)

bench: setup
	HF_HUB_OFFLINE=1 $(PY) benchmarks/encoder_latency.py

clean:
	rm -rf $(VENV) build *.egg-info

# `make demo` and `make test` set everything up on a fresh machine (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SETUP_STAMP := $(VENV)/.ccnet-setup

.PHONY: setup test demo clean

setup: $(SETUP_STAMP)

# Re-run only when what defines the environment changes; a second `make setup` takes seconds.
$(SETUP_STAMP): pyproject.toml tools/install_detectron2.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e ".[test,export]"
	$(PY) tools/install_detectron2.py
	$(PY) -c "import ccnet, detectron2.layers, detectron2.evaluation, detectron2.data"
	touch $@

test: setup
	$(PY) -m pytest -q tests

demo: setup
	$(PY) tools/run_demo.py

clean:
	rm -rf $(VENV) .cache output

# `make gpu-check`, on a machine with a CUDA GPU and its own torch (e.g. 2.11 on Python 3.12):
# a venv on top of that torch with the project's other pins and Detectron2 as `make setup`
# installs it, then the CUDA tests and the CUDA attention table into output/gpu-check/
# (tools/gpu_check.py; about 5 minutes on one GPU).
GPU_PYTHON ?= python3
GPU_VENV := .venv-gpu
.PHONY: gpu-check
gpu-check:
	test -x $(GPU_VENV)/bin/python || $(GPU_PYTHON) -m venv --system-site-packages $(GPU_VENV)
	$(GPU_VENV)/bin/python tools/gpu_check.py --install
	$(GPU_VENV)/bin/python tools/gpu_check.py --output-dir output/gpu-check

# `make demo` and `make test` set everything up on a fresh machine (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SETUP_STAMP := $(VENV)/.ccnet-setup
# `make test-upstream`: upstream Detectron2 built with its compiled ops, in its own venv.
# D2_SOURCE: a pip requirement (git URL) or a local source archive / folder.
D2_SOURCE ?= git+https://github.com/facebookresearch/detectron2.git
UPSTREAM_VENV := .venv-upstream
UPSTREAM_PY := $(UPSTREAM_VENV)/bin/python
UPSTREAM_STAMP := $(UPSTREAM_VENV)/.ccnet-setup

# $(call venv_with_deps,VENV): create VENV if needed and install torch and this project into it.
venv_with_deps = test -x $(1)/bin/python || $(PYTHON) -m venv $(1); \
	$(1)/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1 && \
	$(1)/bin/python -m pip install --quiet -e ".[test,export]"

.PHONY: setup test demo mutation clean setup-upstream test-upstream test-detectron2

setup: $(SETUP_STAMP)

# Re-run only when what defines the environment changes; a second `make setup` takes seconds.
$(SETUP_STAMP): pyproject.toml tools/install_detectron2.py
	$(call venv_with_deps,$(VENV))
	$(PY) tools/install_detectron2.py
	$(PY) -c "import ccnet.config, detectron2.layers, detectron2.evaluation, detectron2.data"
	touch $@

test: setup
	$(PY) -m pytest -q tests

demo: setup
	$(PY) tools/run_demo.py

$(UPSTREAM_STAMP): pyproject.toml
	$(call venv_with_deps,$(UPSTREAM_VENV))
	touch $@

# The Detectron2 build itself is skipped by the installer when the same source is installed.
setup-upstream: $(UPSTREAM_STAMP)
	CCNET_DETECTRON2=upstream CCNET_DETECTRON2_URL="$(D2_SOURCE)" $(UPSTREAM_PY) tools/install_detectron2.py
	$(UPSTREAM_PY) -c "import ccnet, ccnet.compat as c; assert c.has_compiled_ops(), 'no detectron2._C'"

test-upstream: setup-upstream
	$(UPSTREAM_PY) -m pytest -q tests

# Detectron2's own unit tests with `import ccnet` first, against both installs; failures not
# listed in docs/detectron2-tests.md fail the target. D2_TESTS_V06: where v0.6's tests/ are.
D2_TESTS_V06 ?= git+https://github.com/facebookresearch/detectron2.git@v0.6
test-detectron2: setup setup-upstream
	$(PY) tools/run_detectron2_tests.py --tests "$(D2_TESTS_V06)" --expected v0.6
	$(UPSTREAM_PY) tools/run_detectron2_tests.py --tests "$(D2_SOURCE)" --expected main

# Mutation testing of the core modules (docs/testing.md); GROUPS="layers losses" for some only.
mutation: setup
	nice -n 10 $(PY) tools/mutation.py $(GROUPS)

clean:
	rm -rf $(VENV) $(UPSTREAM_VENV) .cache output

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

# `make demo` and `make test` set everything up on a fresh machine (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SETUP_STAMP := $(VENV)/.ccnet-setup

.PHONY: setup test demo mutation clean

setup: $(SETUP_STAMP)

# Re-run only when what defines the environment changes; a second `make setup` takes seconds.
$(SETUP_STAMP): pyproject.toml tools/install_detectron2.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) tools/install_detectron2.py
	$(PY) -c "import ccnet, detectron2.layers, detectron2.evaluation, detectron2.data"
	touch $@

test: setup
	$(PY) -m pytest -q tests

demo: setup
	$(PY) tools/run_demo.py

# Mutation testing of the core modules (docs/testing.md); GROUPS="layers losses" for some only.
mutation: setup
	nice -n 10 $(PY) tools/mutation.py $(GROUPS)

clean:
	rm -rf $(VENV) .cache output

# Two commands: `make run` and `make test`. Both bootstrap everything they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test demo migrate bench clean-data

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	@touch $(STAMP)

run: $(STAMP)
	$(PY) workbench.py serve

test: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	$(PY) workbench.py demo

migrate: $(STAMP)
	$(PY) workbench.py migrate

clean-data:
	rm -rf data/pg-test

# Two entry points (see README): `make demo` runs the main job, `make test` the whole suite.
# Both create or reuse the virtual environment in .venv at the repository root.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch 2.14.1 on x86_64 is a CUDA build (~5.5 GB in the venv, ~3 GB of it downloaded): no pip cache
# copy of those wheels, so the install needs the venv's space and no more.
CONSTRAINTS := requirements/constraints.txt

.PHONY: demo test bench clean-venv

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --no-cache-dir --upgrade "pip>=23"
	$(PY) -m pip install --no-cache-dir -c $(CONSTRAINTS) torch torchvision
	$(PY) -m pip install --no-cache-dir -c $(CONSTRAINTS) -e ".[test,training]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ultrasam demo --out demo_output

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m pip install -c $(CONSTRAINTS) -e ".[bench]"
	$(PY) Testing/benchmarks/bench_encoder.py
	$(PY) Testing/benchmarks/bench_predictor.py

clean-venv:
	rm -rf $(VENV)

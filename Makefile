# Two commands for a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.aptray-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export RAY_USAGE_STATS_ENABLED := 0
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

# torch==2.13.0 first, by pip (the CPU build on disk; uv does not look there), with uv; then everything else in
# ONE uv command, moto included, so botocore is resolved for s3fs and moto together. uv keeps the installed torch
# and installs the same packages as pip would, in seconds rather than minutes (a fresh venv here: 12 s against
# 445 s for pip's second step). --system-certs: the machine's trust store (a TLS-inspecting egress proxy's CA
# lies there); should uv fail anyway, pip installs the same.
# --compile-bytecode: uv, unlike pip, leaves no .pyc behind, and where PYTHONDONTWRITEBYTECODE is set (these
# machines set it) every process then compiles ray, transformers and pandas from source on import: 10.7 s of
# imports per Ray worker against 6.4 s with the bytecode (measured here), paid by every worker of every test.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0 uv
	$(BIN)/uv pip install --quiet --system-certs --compile-bytecode --python $(BIN)/python -e '.[dev]' \
	  || $(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/aptray run $(INPUT) $(if $(INPUT),--source $(or $(SOURCE),beth),) --out out/demo

lint: $(STAMP)
	$(BIN)/ruff check aptray tests bench jobs
	$(BIN)/mypy aptray bench

# compileall: the package's own bytecode too (0.3 s less per process importing it; see --compile-bytecode)
test: $(STAMP) lint
	$(BIN)/python -m compileall -q aptray tests > /dev/null
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests

bench: $(STAMP)
	$(BIN)/python bench/embed.py

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache .mypy_cache

# One Makefile, two promises: `make run` does the main job and `make check`
# runs everything CI runs. Both create .venv on first use (and refresh it when
# pyproject.toml changes), so a fresh clone needs nothing but python3 >= 3.11.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run check lint types test bench clean sysdeps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

# Byte-compile our sources, as installing a wheel does: an editable install is never
# compiled where PYTHONDONTWRITEBYTECODE is set (it is on our machines), and then every
# kernel process compiles kernelyard's modules again when it starts (~30 ms).
COMPILE := $(BIN)/python -m compileall -q src

## The main job: the kernel server (jupyter_server's kernels API), our kernel as the default.
## Extra flags: make run ARGS='--port 9999 --no-token'
run: $(STAMP)
	$(COMPILE)
	$(BIN)/kernelyard serve $(ARGS)

## Everything CI runs: lint, types, tests with coverage.
check: lint types test

lint: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks

types: $(STAMP)
	$(BIN)/mypy src

test: $(STAMP) sysdeps
	$(BIN)/pytest --cov --cov-report=term

## System programs the tests run (openssl for TLS certificates, node and npm for
## @jupyterlab/services, Slurm and munge for the cluster tests, iproute2 for their
## network namespaces), installed with apt-get when missing (CI runs as root).
SYSDEPS := openssl:openssl node:nodejs npm:npm slurmctld:slurm-wlm munged:munge ip:iproute2
sysdeps:
	@missing=""; for pair in $(SYSDEPS); do \
		command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

bench: $(STAMP)
	$(COMPILE)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov

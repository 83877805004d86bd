# The two entry points of the README.  Both create the virtual environment .venv
# on first use (pip install -e .[test,mpi] when mpi4py can build, else .[test]).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CORES  ?= 2

.PHONY: run test venv clean-venv

$(BIN)/desired: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/desired

# simulate the default night and process it as far as the pipeline goes
run: venv
	$(BIN)/snakemake --profile profiles/local --cores $(CORES)

test: venv
	$(BIN)/python -m pytest -q -ra tests

clean-venv:
	rm -rf $(VENV)

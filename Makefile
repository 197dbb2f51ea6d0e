# The VAE course book. `make book` and `make test` are the two commands (see README.md).
# Every target creates or reuses the virtual environment in .venv.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PRESET ?= cpu
CHAPTERS ?= $(wildcard book/*.ipynb)
ASSIGNMENTS := $(notdir $(wildcard solutions/ps*))
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: book test lab release execute check-python clean

check-python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found: install Python 3.11 (or run make PYTHON=/path/to/python3.11)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "error: Python 3.11 is needed, $(PYTHON) is $$($(PYTHON) -V 2>&1)"; exit 1; }
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { echo "error: $(PYTHON) lacks venv/ensurepip: install the python3.11-venv package"; exit 1; }

$(VENV)/.installed: requirements.txt pyproject.toml | check-python
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	@touch $@

book: $(VENV)/.installed
	$(BIN)/jupyter-book build . -W --keep-going
	@echo "The book is in _build/html/index.html"

test: $(VENV)/.installed
	@if [ "$$CI" = "true" ] && ! command -v chromium >/dev/null 2>&1; then \
		command -v apt-get >/dev/null 2>&1 || { echo "error: CI needs Chromium for the browser test and apt-get is missing to install it"; exit 1; }; \
		echo "installing Chromium for the browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	@if [ "$$CI" = "true" ] && ! command -v bwrap >/dev/null 2>&1; then \
		command -v apt-get >/dev/null 2>&1 || { echo "error: CI needs bubblewrap for the grading sandbox and apt-get is missing to install it"; exit 1; }; \
		echo "installing bubblewrap for the grading sandbox"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
	fi
	$(BIN)/python -m pytest

lab: $(VENV)/.installed
	$(BIN)/jupyter lab --notebook-dir=.

release: $(VENV)/.installed
	@for ps in $(ASSIGNMENTS); do $(BIN)/nbgrader generate_assignment $$ps --force --create || exit 1; done
	@rm -f gradebook.db

execute: $(VENV)/.installed
	@case "$(PRESET)" in smoke|cpu|gpu) ;; *) echo "error: PRESET must be smoke, cpu or gpu, got '$(PRESET)'"; exit 1;; esac
	VAECOURSE_PRESET=$(PRESET) $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=3600 $(CHAPTERS)

clean:
	rm -rf _build

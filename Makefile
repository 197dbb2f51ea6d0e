# The VAE course book. `make book` and `make test` are the two commands (see README.md).
# Every target creates or reuses the virtual environment in .venv.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PRESET ?= book
CHAPTERS ?= $(wildcard book/*.ipynb)
ASSIGNMENTS := $(notdir $(wildcard solutions/ps*))
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: book test lab lab-instructor pdf release execute benchmarks check-python clean

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

# JupyterLab refuses to start as root (Docker, root shells) unless told to. LAB_ARGS: more
# options for jupyter lab (tests/test_lab.py passes a port and a token).
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root)
WORKSPACE ?= workspace

# Students work in $(WORKSPACE)/ (git-ignored), a copy of the chapters and exercises made once:
# running a chapter there never changes the tracked notebooks, and a later `make lab` keeps the
# student's work (files already copied are never overwritten). nbgrader's instructor-only
# extensions are turned off there (book/_ext/lab/student).
lab: $(VENV)/.installed
	@for f in book/*.ipynb exercises/*/*.ipynb; do test -e $(WORKSPACE)/$$f || \
		{ mkdir -p $(WORKSPACE)/$$(dirname $$f) && cp $$f $(WORKSPACE)/$$f; } || exit 1; done
	JUPYTER_CONFIG_PATH=$(CURDIR)/book/_ext/lab/student \
		$(BIN)/jupyter lab --notebook-dir=$(WORKSPACE) $(LAB_FLAGS) $(LAB_ARGS)

# Instructors: JupyterLab on the repository with all of nbgrader (formgrader, create assignment).
lab-instructor: $(VENV)/.installed
	$(BIN)/jupyter lab --notebook-dir=. $(LAB_FLAGS) $(LAB_ARGS)

# The PDF of the book: the single-page HTML build, printed by headless Chromium once MathJax has
# typeset it, with the network cut off (no LaTeX needed; Debian: apt-get install chromium).
# PDF_OUT: the folder that receives _build/ (tests/test_book.py builds into a temporary one).
CHROMIUM ?= $(firstword $(shell command -v chromium chromium-browser google-chrome 2>/dev/null))
PDF_OUT ?= $(CURDIR)
SINGLE := $(PDF_OUT)/_build/singlehtml
pdf: $(VENV)/.installed
	@test -n "$(CHROMIUM)" || { echo "error: make pdf needs Chromium (Debian: apt-get install chromium, or make pdf CHROMIUM=/path/to/chrome)"; exit 1; }
	$(BIN)/jupyter-book build . --builder singlehtml --path-output $(PDF_OUT) -W --keep-going
	@mkdir -p $(PDF_OUT)/_build/pdf
	@# singlehtml writes the whole book to book/preface.html (the root page) with links relative
	@# to its output folder: print a copy that sits there.
	cp $(SINGLE)/book/preface.html $(SINGLE)/vae-course-book.html
	$(CHROMIUM) --headless=new --no-sandbox --disable-gpu --no-first-run --no-pdf-header-footer \
		--host-resolver-rules="MAP * ~NOTFOUND" --proxy-server=127.0.0.1:9 \
		--virtual-time-budget=120000 --print-to-pdf=$(PDF_OUT)/_build/pdf/vae-course-book.pdf \
		file://$(SINGLE)/vae-course-book.html
	@echo "The PDF is $(PDF_OUT)/_build/pdf/vae-course-book.pdf"

release: $(VENV)/.installed
	@for ps in $(ASSIGNMENTS); do $(BIN)/nbgrader generate_assignment $$ps --force --create || exit 1; done
	@rm -f gradebook.db

execute: $(VENV)/.installed
	@case "$(PRESET)" in smoke|cpu|book|gpu) ;; *) echo "error: PRESET must be smoke, cpu, book or gpu, got '$(PRESET)'"; exit 1;; esac
	VAECOURSE_PRESET=$(PRESET) $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=3600 $(CHAPTERS)

# The benchmark tables quoted in README.md: each script's output under one preset over SEEDS seeds.
BENCHMARKS := vae_mnist colorization forecasting
BENCH_PRESET ?= cpu
SEEDS ?= 3

benchmarks: $(VENV)/.installed
	@case "$(BENCH_PRESET)" in cpu|gpu) ;; *) echo "error: BENCH_PRESET must be cpu or gpu, got '$(BENCH_PRESET)'"; exit 1;; esac
	mkdir -p benchmarks/results
	for b in $(BENCHMARKS); do \
		(cd benchmarks && ../$(BIN)/python $$b.py --preset $(BENCH_PRESET) --seeds $(SEEDS)) \
			> benchmarks/results/$$b-$(BENCH_PRESET).md.part || exit 1; \
		mv benchmarks/results/$$b-$(BENCH_PRESET).md.part benchmarks/results/$$b-$(BENCH_PRESET).md; \
	done

clean:
	rm -rf _build

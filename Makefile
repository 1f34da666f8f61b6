# handpose-book: one entry point. `make book` and `make test` do all the set-up they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
PY          := $(VENV)/bin/python
PYTHON      ?= python3
# torch wheels: this project's machines carry these two on disk; override for other platforms,
# e.g. make book TORCH_SPEC="torch torchvision"
TORCH_SPEC  ?= torch==2.14.1 torchvision==0.29.1
STAMP       := $(VENV)/.handpose-installed
BOOK_OUT    := _build/html
export PLOTLY_RENDERER ?= plotly_mimetype+notebook
export MPLBACKEND ?= Agg

.PHONY: help env book test lint unit site-test lab model detector browser-deps clean student publish site-with-notebooks

help:
	@echo "make book   - create .venv if missing, then build the book site into $(BOOK_OUT)"
	@echo "make test   - create .venv if missing, then lint, unit tests, book build and browser checks"
	@echo "make lab    - JupyterLab on the book's chapters"
	@echo "make model  - train and evaluate the book model (cached in models/)"
	@echo "make detector - train and evaluate the hand detector (models/detector; reused if there)"
	@echo "make student- write student/instructor versions of the chapters"
	@echo "make publish- push $(BOOK_OUT) to the gh-pages branch"

# ---------------------------------------------------------------------------------------
# environment: a .venv with torch and `pip install -e .[book,dev]`, rebuilt when pyproject changes
env: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x "$(PY)" ]; then echo ">> creating virtual environment $(VENV)"; $(PYTHON) -m venv $(VENV); fi
	@echo ">> installing $(TORCH_SPEC) into $(VENV)"
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	@echo ">> installing handpose-book (pip install -e .[book,dev])"
	$(PY) -m pip install --quiet -e '.[book,dev]'
	@touch $(STAMP)
	@echo ">> environment ready: $(VENV)"

# ---------------------------------------------------------------------------------------
# the book
book: env
	@echo ">> checking the site's offline JavaScript (book/_offline_assets, see tools/offline_assets.py)"
	$(PY) tools/offline_assets.py --check
	@echo ">> building the book into $(BOOK_OUT) (chapters execute with HANDPOSE_PROFILE=$${HANDPOSE_PROFILE:-quick})"
	PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/jupyter-book build . -W --keep-going --path-output .
	@echo ">> done: open $(BOOK_OUT)/index.html"

lab: env
	@echo ">> starting JupyterLab on book/ (chapters open as notebooks through jupytext)"
	$(VENV)/bin/jupyter lab --notebook-dir=book

model: env
	@echo ">> training or reusing the book model (models/book-tiny)"
	$(PY) -m handpose_lib.cli book-model

# the hand detector, four stages (models/detector/README.md): 1,000 steps on capsule-hand frames
# (about an hour, one thread), 35 minutes on mesh-hand frames warm-started from them, 70 minutes
# with half the frames the engine's own full frames (bf16 where faster, 2 frame workers), then
# 40 more minutes at half the learning rate with 70 % of the frames full frames
detector: env
	@if [ -f models/detector/checkpoint.json ]; then \
	  echo ">> models/detector already holds a trained detector (reused; delete it to train again)"; \
	else \
	  echo ">> training the hand detector (resumable runs in runs/detector-*)" && \
	  $(PY) -m handpose_lib.detector_train --out runs/detector-v1 --run runs/detector-v1-run \
	    --hand-model capsule --steps 1000 && \
	  $(PY) -m handpose_lib.detector_train --out runs/detector-v2 --run runs/detector-v2-run \
	    --hand-model mesh --init runs/detector-v1 --steps 3000 --minutes 35 --lr 1e-3 --warmup-steps 50 && \
	  $(PY) -m handpose_lib.detector_train --out runs/detector-v4 --run runs/detector-v4-run \
	    --init runs/detector-v2 --steps 20000 --minutes 70 --lr 1e-3 --warmup-steps 50 \
	    --threads 1 --workers 2 --amp measure --scene-prob 0.5 && \
	  $(PY) -m handpose_lib.detector_train --out models/detector --run runs/detector-v5-run \
	    --init runs/detector-v4 --steps 20000 --minutes 40 --lr 5e-4 --warmup-steps 50 \
	    --threads 1 --workers 2 --amp measure --scene-prob 0.7; \
	fi

# ---------------------------------------------------------------------------------------
# tests
browser-deps:
	@if command -v chromium >/dev/null 2>&1; then echo ">> chromium found: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	  echo ">> installing Debian's chromium for the browser checks (apt-get install chromium)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo ">> could not install chromium: the browser checks will fail; install it by hand"; \
	else echo ">> chromium is missing: install it (apt-get install chromium) for the browser checks"; fi

lint: env
	@echo ">> ruff check and ruff format --check"
	$(VENV)/bin/ruff check handpose_lib tests data_scripts benchmarks tools
	$(VENV)/bin/ruff format --check handpose_lib tests data_scripts benchmarks tools

unit: env
	@echo ">> unit tests (pytest fails when no test ran)"
	$(PY) -m pytest -m "not book" -q

site-test: env browser-deps
	@if [ ! -f $(BOOK_OUT)/index.html ]; then echo ">> no site in $(BOOK_OUT) yet: building it first"; $(MAKE) --no-print-directory book; fi
	@echo ">> browser checks of the built site in headless chromium (offline; screenshots in test-output/site)"
	$(PY) -m pytest -m book -q

test: lint unit book site-test
	@echo ">> all tests passed"

# ---------------------------------------------------------------------------------------
student: env
	@echo ">> writing chapter notebooks: student/ (solutions removed) and instructor/ (with solutions)"
	$(PY) tools/student.py --student-out student --instructor-out instructor

# the site plus both notebook versions (Colab buttons open notebooks/<version>/ on gh-pages)
site-with-notebooks: book student
	@echo ">> copying student/ and instructor/ notebooks into $(BOOK_OUT)/notebooks/"
	rm -rf $(BOOK_OUT)/notebooks && mkdir -p $(BOOK_OUT)/notebooks
	cp -r student instructor $(BOOK_OUT)/notebooks/

# GH_PAGES_REMOTE=upstream make publish to push elsewhere; `-n` adds .nojekyll (keeps _static/)
GH_PAGES_REMOTE ?= origin
publish: site-with-notebooks
	@echo ">> pushing $(BOOK_OUT) to the gh-pages branch of $(GH_PAGES_REMOTE) (ghp-import)"
	$(VENV)/bin/ghp-import -n -p -f -r $(GH_PAGES_REMOTE) -m "Publish the book" $(BOOK_OUT)

clean:
	rm -rf _build .pytest_cache .ruff_cache student instructor

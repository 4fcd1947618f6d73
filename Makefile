# make book  : set up .venv (if missing) and Chromium, build the site into _build/html,
#              with the whole book as one PDF and a zip of the notebooks in _build/html/downloads
#              and the lab page's runtime (onnxruntime-web from the npm registry, book/_ext/lab_build.py);
#              then the Chinese edition (locale/zh_CN catalogues, book/_ext/i18n.py) into
#              _build/html/zh, with its own PDF and zip in _build/html/zh/downloads
# make test  : set up everything (apt data + browser, .venv), build the book, run every test
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# Steadier, faster CPU training for memory-bound nets (glibc keeps freed memory).
export MALLOC_MMAP_MAX_ = 0
export MALLOC_TRIM_THRESHOLD_ = 100000000000
export D2L_PROGRESS ?= 0

.PHONY: setup system-deps book test unit notebooks-test site-test execute rerun-book clean serve po zh-notebooks

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

setup: $(STAMP)

# Debian's Fashion-MNIST, Chromium (the browser tests, the PDFs), a Chinese font (the Chinese PDF,
# the glossary, the Chinese pages in the browser test) and npm (fetches the lab page's onnxruntime-web).
# Uses sudo when not root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-deps:
	@if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || ! command -v chromium >/dev/null \
	    || [ ! -d /usr/share/fonts/truetype/wqy ] || ! command -v npm >/dev/null; then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq dataset-fashion-mnist chromium fonts-wqy-microhei \
	    $$(command -v npm >/dev/null || echo nodejs npm); \
	fi

book: setup system-deps
	$(BIN)/jupyter-book build . -W -n --keep-going
	$(BIN)/python book/_ext/i18n.py build
	$(BIN)/python book/_ext/lab_build.py
	$(BIN)/python book/_ext/downloads.py

# Unit and property tests, every chapter under nbval (quick profile), then both editions of the
# site in Chromium (tests/test_site.py, tests/test_zh.py: catalogues, Chinese notebooks, pages).
test: system-deps book
	D2L_PROFILE=quick $(BIN)/python -m pytest tests notebooks book --nbval-lax -p no:cacheprovider

unit: setup
	$(BIN)/python -m pytest tests -m "not slow" -p no:cacheprovider

# Re-execute the chapters and store their outputs: the `cpu` profile without a GPU,
# `full` with one (or set D2L_PROFILE). Each chapter's wall time is printed.
NB ?= notebooks/*.ipynb book/*.ipynb
execute: setup
	@for nb in $(wildcard $(NB)); do \
	  echo "executing $$nb"; start=$$(date +%s); \
	  (cd $$(dirname $$nb) && $(CURDIR)/$(BIN)/jupyter-execute --inplace --timeout=-1 $$(basename $$nb)) || exit 1; \
	  echo "$$nb: $$(( $$(date +%s) - start )) s"; \
	done

# The whole book re-executed on one machine, as its stored pages should be made: first the
# recipes' planning rates measured here (benchmarks/speed.py, about 15 min) and written into the
# chapters (apply_rates.py), so that every plan line describes this machine; then each chapter
# (chapter 8 before the comparison, which reads its ResNet run), the performance page, the lab's
# models (from the new LeNet and VGG checkpoints) and the plain-Markdown copies. About 2.2 h on
# the 2-core CPU that built the book. Then `make po`, translate what changed, `make zh-notebooks`.
# A smoke run of the whole path (in a scratch clone: it rewrites what it makes): 
#   D2L_PROFILE=quick make rerun-book SPEED_ARGS=--quick
rerun-book: setup
	$(BIN)/python benchmarks/speed.py $(SPEED_ARGS)
	$(BIN)/python benchmarks/apply_rates.py
	$(BIN)/python -m d2lutils.codegen
	$(MAKE) execute NB="$(sort $(wildcard notebooks/0[1-6]_*.ipynb)) notebooks/08_after2015.ipynb notebooks/07_compare.ipynb book/performance.ipynb"
	PYTHONPATH=. $(BIN)/python book/_ext/lab_export.py --profile $(or $(D2L_PROFILE),cpu)
	$(BIN)/python book/_ext/plain_notebooks.py

# After an English edit: merge the new messages into the Chinese catalogues (an edited paragraph
# keeps its old translation, marked fuzzy), translate them, then regenerate the notebooks that
# Colab, Kaggle and Binder open (`make zh-notebooks`: the plain-Markdown copies in notebooks/en/
# and the Chinese ones in notebooks/zh/).
po: setup
	$(BIN)/python book/_ext/i18n.py update

zh-notebooks: setup
	$(BIN)/python book/_ext/plain_notebooks.py
	$(BIN)/python book/_ext/zh_notebooks.py

serve:
	$(BIN)/python -m http.server --bind 127.0.0.1 --directory _build/html 8000

clean:
	rm -rf _build

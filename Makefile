# adlens — developer entry points. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= demo

.PHONY: setup demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Re-install only when the dependency list changes.
# torch first and pinned: 2.13.0 is the CPU build on this machine's wheel cache (an unpinned
# torch pulls a multi-GB CUDA build). rapidocr without its deps: it requires opencv-python,
# which would clash with opencv-python-headless (same cv2 module); its other deps are ours.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet --no-deps rapidocr-onnxruntime==1.4.4
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/adlens init --workspace $(DEMO)/workspace
	$(BIN)/adlens sample $(DEMO)/sample
	$(BIN)/adlens run --workspace $(DEMO)/workspace \
	    --ads $(DEMO)/sample/ads.csv --articles $(DEMO)/sample/articles.jsonl \
	    --products $(DEMO)/sample/products.csv \
	    --report $(DEMO)/report.html
	@echo "report: $(DEMO)/report.html"

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(DEMO) .pytest_cache

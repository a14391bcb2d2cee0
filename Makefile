# Two entry points for a newcomer: `make demo` and `make test`. Both create and reuse .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup browser screenshots clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m zsvc_pl.demo

# Chromium for the web page's browser tests, from Debian's packages (Playwright's own download is not used).
# As root (CI) it is installed and the browser tests are required; otherwise they are skipped when it is missing.
browser:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
	@command -v chromium >/dev/null || echo "no chromium (install it as root: apt-get install chromium): browser tests skipped"

# pytest exits 5 when it collects no test: not a failure of the project. Two workers (pytest-xdist), one per
# core: most tests wait on imports and subprocesses, and the suite takes about two thirds of the time.
PYTEST_ARGS ?= -n 2
test: $(STAMP) browser
	CUDA_VISIBLE_DEVICES="" ZSVC_REQUIRE_BROWSER=$$([ "$$(id -u)" = 0 ] && echo 1 || echo 0) \
	  $(BIN)/python -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

# The web page's screenshots in docs/img, taken by its browser tests.
screenshots: $(STAMP) browser
	mkdir -p docs/img
	ZSVC_SCREENSHOTS=docs/img $(BIN)/python -m pytest -q tests/test_web_browser.py

clean:
	rm -rf $(VENV) lightning_logs demo_runs .pytest_cache

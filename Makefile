# Two commands do all the set-up: `make demo` and `make test`. Both create or reuse .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sfnet-installed
# torch/torchvision wheels; override on other platforms, e.g. TORCH_PKGS="torch torchvision"
TORCH_PKGS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint bench chromium clean-venv docs

# One install call (one resolve) through uv, which unpacks the ~5.5 GB of torch, its CUDA
# libraries and the rest in parallel (measured on 2 cores: 43-53 s against pip's 151 s), from
# the package sources pip is configured with (UV_SOURCES), best version across them as pip picks;
# plain pip where uv cannot be installed. No byte-compiling at install (compiling every installed
# .py costs ~90 s CPU, 15,400 files): importing every sfnet module once byte-compiles just what
# sfnet runs (~20 s CPU). It must write its .pyc even where PYTHONDONTWRITEBYTECODE is set (an
# empty value is "unset" to Python): without them every later process compiles torch and
# torchvision from source again, `import torchvision` 14.5 s CPU instead of 6.2.
WRITE_PYC := PYTHONDONTWRITEBYTECODE=
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	if $(BIN)/pip install -q uv; then \
	  $(BIN)/uv pip install -q --python $(BIN)/python --index-strategy unsafe-best-match \
	    $$($(BIN)/python -c "$$UV_SOURCES") $(TORCH_PKGS) -e '.[dev]'; \
	else $(BIN)/pip install -q --no-compile $(TORCH_PKGS) -e '.[dev]'; fi
	$(WRITE_PYC) $(BIN)/python -c "$$IMPORT_ALL"
	touch $(STAMP)

# pip's configured package sources (pip.conf, PIP_* variables) as uv options
define UV_SOURCES
import subprocess, sys
out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
flags = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links"}
args = []
for line in out.stdout.splitlines():
    key, _, value = line.partition("=")
    flag = flags.get(key.rsplit(".", 1)[-1])
    for v in value.strip("'\"").split() if flag else ():
        if v not in args:
            args += [flag, v]
print(" ".join(args))
endef
export UV_SOURCES

define IMPORT_ALL
import importlib, pkgutil, sfnet
for m in pkgutil.walk_packages(sfnet.__path__, "sfnet."):
    if not m.name.endswith("__main__"):
        importlib.import_module(m.name)
endef
export IMPORT_ALL

demo: $(STAMP)
	$(BIN)/sfnet demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# Headless Chromium renders the HTML feature atlas in the tests (Debian package).
chromium:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# Two workers of one thread each, a test file per worker at a time (its fixtures built once);
# .pyc written (WRITE_PYC) for what only the tests import: the suite starts ~40 interpreters.
test: $(STAMP) chromium lint
	$(WRITE_PYC) OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile

# The documentation site (Sphinx; warnings are errors) into docs/_build/html.
docs: $(STAMP)
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)

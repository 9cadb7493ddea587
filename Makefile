# EM-Infra pipeline. `make demo` runs the whole pipeline against the embedded simulator;
# `make test` runs every check. Both set themselves up first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
COLLECTION_LINK := .collections/ansible_collections/eminfra/pipeline
export PATH := $(abspath $(BIN)):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PYTHONDONTWRITEBYTECODE := 1
# The Terraform CLI config that `make setup` writes (tests/setup/install-provider.sh): the
# bpg/proxmox provider from the local mirror in .cache/terraform/providers/, or empty where none
# could be built. pytest, molecule, the demo and the gate inherit it.
export TF_CLI_CONFIG_FILE := $(CURDIR)/.cache/terraform/terraformrc

.PHONY: help setup debs test test-unit lint sanity build-check schema demo bench
.PHONY: gate validate-intent molecule

# Runs a step and reports how long it took: $(call timed,label,command)
timed = start=$$(date +%s); $(2); rc=$$?; echo "make: $(1) took $$(( $$(date +%s) - start )) s (exit $$rc)"; exit $$rc

help:
	@echo "make setup   create .venv with pinned tools, Terraform, the pinned bpg/proxmox provider and community.proxmox for the tests (as root also the Debian packages)"
	@echo "make test    set up, then run every check (unit, integration, sanity, lint, build)"
	@echo "make lint    ansible-lint (production profile)"
	@echo "make sanity  ansible-test sanity on a copy under build/sanity/ansible_collections/eminfra/pipeline"
	@echo "make build-check  build, inspect and install the collection tarball"
	@echo "make schema  regenerate schema.json from plugins/module_utils/_contracts.py"
	@echo "make demo    run the whole pipeline against the embedded Proxmox simulator"
	@echo "make molecule  the molecule scenarios (pipeline end to end, resume, refusals, dry run)"
	@echo "make bench   benchmarks, reported as ratios against a baseline"
	@echo "make gate    Phase 1 validation gate (records evidence in the Phase 1 tracker)"

# The Debian packages come first: on a bare Debian python3 cannot make a virtualenv without python3-venv.
setup: debs $(VENV)/.installed $(COLLECTION_LINK)
	@tests/setup/install-terraform.sh $(VENV)
	@tests/setup/install-provider.sh
	@tests/setup/install-community-proxmox.sh $(VENV)

debs:
	@PYTHON=$(PYTHON) tests/setup/install-debs.sh

$(VENV)/.installed: tests/requirements.txt | debs
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r tests/requirements.txt
	@touch $@

$(COLLECTION_LINK):
	@mkdir -p $(dir $(COLLECTION_LINK))
	@ln -sfn ../../.. $(COLLECTION_LINK)

test: setup
	@$(call timed,pytest,$(PY) -m pytest tests)
	@$(MAKE) --no-print-directory sanity
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory build-check
	@$(MAKE) --no-print-directory molecule

test-unit: setup
	$(PY) -m pytest tests/unit

lint: setup
	@$(call timed,lint,$(BIN)/ansible-lint --profile production)

sanity: setup
	@$(call timed,sanity,$(PY) -m tests.tools.sanity)

build-check: setup
	@$(call timed,build-check,$(PY) -m tests.tools.build_check)

schema: setup
	$(PY) -m tests.tools.gen_schema

# The whole pipeline against the simulator (tests/demo/demo.py; state in state/demo/, docs/demo.md).
demo: setup
	@$(call timed,demo,$(PY) -m tests.demo.demo)

# Molecule scenarios (extensions/molecule/): the pipeline end to end, resume, refusals, dry run.
molecule: setup
	@$(call timed,molecule,$(BIN)/molecule test --all)

bench: setup
	PYTHON=$(abspath $(PY)) tests/bench/run_all.sh

# Phase 1 validation gate: terraform init/validate, intent, Markdown links, provider pins, doc
# wording; appends one evidence row per command to docs/EM-Infra-Phase1-Implementation-Tracker.md.
gate: setup
	$(PY) -m tests.tools.gate

validate-intent: setup
	$(PY) -m tests.tools.validate_intent

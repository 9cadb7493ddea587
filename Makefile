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

.PHONY: help setup test test-unit lint sanity build-check demo bench

help:
	@echo "make setup   create .venv with pinned tools (as root also the Debian packages)"
	@echo "make test    set up, then run every check (unit, integration, sanity, lint, build)"
	@echo "make lint    ansible-lint (production profile)"
	@echo "make demo    run the whole pipeline against the embedded Proxmox simulator"
	@echo "make bench   benchmarks, reported as ratios against a baseline"

setup: $(VENV)/.installed $(COLLECTION_LINK)
	@tests/setup/install-debs.sh
	@tests/setup/install-terraform.sh $(VENV)

$(VENV)/.installed: tests/requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r tests/requirements.txt
	@touch $@

$(COLLECTION_LINK):
	@mkdir -p $(dir $(COLLECTION_LINK))
	@ln -sfn ../../.. $(COLLECTION_LINK)

test: setup
	$(PY) -m pytest tests
	$(MAKE) --no-print-directory lint

test-unit: setup
	$(PY) -m pytest tests/unit

lint: setup
	$(BIN)/ansible-lint --profile production

demo:
	@echo "make demo: not built yet (the end-to-end demo comes with the pipeline steps)." >&2
	@exit 2

bench: setup
	PYTHON=$(abspath $(PY)) tests/bench/run_all.sh

# mTLS load-balancer lab. `make` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV   ?= .venv
LAB    := $(VENV)/bin/lab
PYTEST := $(VENV)/bin/pytest
STAMP  := $(VENV)/.installed

.PHONY: help setup images certs lab-up lab-up-all lab-down status logs compare bench scan wheel test test-unit clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test,compose]'
	@touch $@

setup: $(STAMP) ## Create .venv, install the lab, check Docker and Compose v2
	$(LAB) setup

images: setup ## Base image (present, pulled or bootstrapped) and the lab images
	$(LAB) images

certs: $(STAMP) ## Generate the lab PKI in certs/ (idempotent)
	$(LAB) certs

# A first start's two slow steps side by side: the base image (lab/base_image.py, with the
# system's Python: present, pulled or bootstrapped) while pip builds the virtualenv. If the
# base step fails, `lab up` tries again and names the fix.
SETUP_AND_BASE = $(PYTHON) -m lab.base_image & base=$$!; \
	$(MAKE) --no-print-directory setup || { kill $$base; exit 1; }; wait $$base || true

lab-up: ## Bring the lab up (certs, images, configs) and wait until healthy
	@$(SETUP_AND_BASE)
	$(LAB) up

lab-up-all: ## The lab with every contrast design (ALB modes, NLB TLS listener)
	@$(SETUP_AND_BASE)
	$(LAB) up --all-designs

lab-down: $(STAMP) ## Stop the lab and remove its containers and networks
	$(LAB) down

status: $(STAMP) ## Services, health and published ports
	$(LAB) status

logs: $(STAMP) ## Last log lines of every service
	$(LAB) logs

compare: $(STAMP) ## One table: every running design probed with the same clients
	$(LAB) compare

bench: $(STAMP) ## Handshake rates, latency, start-up and memory figures (restarts the lab)
	$(LAB) bench

scan: $(STAMP) ## sslyze against the NLB and each backend
	$(LAB) scan

wheel: $(STAMP) ## Build the installable wheel into dist/
	$(VENV)/bin/pip wheel --no-deps -q -w dist .

test-unit: $(STAMP) ## Fast lane: unit tests, no Docker
	$(PYTEST) tests/unit

test: images ## Full lane: unit tests and the integration suite against a real stack
	$(PYTEST) tests

clean: ## Remove rendered configs and the virtualenv (keeps certs/)
	rm -rf build dist $(VENV) .venv-sslyze *.egg-info

# mTLS load-balancer lab. `make` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV   ?= .venv
LAB    := $(VENV)/bin/lab
PYTEST := $(VENV)/bin/pytest
STAMP  := $(VENV)/.installed

.PHONY: help setup images certs lab-up lab-down status logs test test-unit clean

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

lab-up: setup ## Bring the lab up (certs, images, configs) and wait until healthy
	$(LAB) up

lab-down: $(STAMP) ## Stop the lab and remove its containers and networks
	$(LAB) down

status: $(STAMP) ## Services, health and published ports
	$(LAB) status

logs: $(STAMP) ## Last log lines of every service
	$(LAB) logs

test-unit: $(STAMP) ## Fast lane: unit tests, no Docker
	$(PYTEST) tests/unit

test: images ## Full lane: unit tests and the integration suite against a real stack
	$(PYTEST) tests

clean: ## Remove rendered configs and the virtualenv (keeps certs/)
	rm -rf build $(VENV) *.egg-info

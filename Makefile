# Two entry points for a fresh Debian 12 machine, as root:  make demo  and  make test.
# Every target is idempotent: a second run only checks what the first one did.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -euo pipefail -c

# Debian's python: the venv must load Debian's gfal2 binding (python3-gfal2), built for it.
SYSTEM_PYTHON := /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
APPLIANCE := $(VENV)/bin/appliance
PYTEST_ARGS ?=

APT_PACKAGES := docker.io runc mmdebstrap podman uidmap python3-venv python3-dev \
	python3-gfal2 gfal2-plugin-file gfal2-plugin-http gfal2-plugin-gridftp gfal2-util-scripts \
	globus-gridftp-server-progs globus-proxy-utils globus-gass-copy-progs \
	mariadb-server mariadb-client postgresql nginx curl openssl vagrant apt-utils \
	build-essential git ca-certificates iproute2 util-linux \
	litmus charliecloud slurm-wlm munge source-extractor \
	chromium chromium-driver xvfb jsamp topcat

.PHONY: help deps engine venv images demo test lint bench clean-demo

help:
	@echo "make demo   - set up everything, then lock, run, re-run (cache hit), replay and export the example recipe"
	@echo "make test   - set up everything, then run the whole test suite (CI runs this)"
	@echo "make bench  - run the benchmarks under bench/ (figures go to docs/BENCHMARKS.md by hand)"
	@echo "make lint   - ruff"

deps:
	missing=""
	for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; done
	if [ -n "$$missing" ]; then
	  echo ">> apt-get install:$$missing"
	  apt-get update -qq
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing
	fi
	$(MAKE) --no-print-directory engine

# Start dockerd without bridge/iptables (no systemd here) if no engine answers.
engine:
	if ! docker info >/dev/null 2>&1; then
	  echo ">> starting dockerd (--bridge=none --iptables=false --ip6tables=false)"
	  nohup dockerd --bridge=none --iptables=false --ip6tables=false >/var/log/appliance-dockerd.log 2>&1 &
	  for i in $$(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
	  docker info >/dev/null 2>&1 || { echo "dockerd did not start: see /var/log/appliance-dockerd.log"; exit 1; }
	fi

$(VENV)/.installed: pyproject.toml
	[ -x $(PY) ] || $(SYSTEM_PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	# byte-compile the project once (the editable install is not), so CLI start-up stays fast
	$(PY) -m compileall -q appliance archive >/dev/null
	# Expose only Debian's gfal2 binding to the venv (the PyPI sdist does not build against gfal2 2.21).
	site=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
	mkdir -p $(VENV)/debian-gfal2
	ln -sf /usr/lib/python3/dist-packages/gfal2.cpython-311-x86_64-linux-gnu.so $(VENV)/debian-gfal2/
	echo "$$(cd $(VENV)/debian-gfal2 && pwd)" > $$site/debian-gfal2.pth
	$(PY) -c 'import gfal2; print(">> gfal2 binding", gfal2.get_version())'
	touch $@

venv: deps $(VENV)/.installed

images: venv
	$(APPLIANCE) images ensure

demo: images
	$(PY) -m appliance.demo

test: images
	export GFAL_PYTHONBIN=$(SYSTEM_PYTHON)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check appliance archive tests bench

bench: images
	for b in bench/*.py; do echo ">> $$b"; $(PY) $$b; done

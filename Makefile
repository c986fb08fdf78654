VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup test test-fast lint typecheck check bench demo clean proto proto-check

setup:
	@VENV='$(VENV)' bash scripts/setup.sh

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# One tier alone: make test-unit, test-card, test-hsm, test-store, test-app, test-service,
# test-faults, test-cli (the folders under tests/).
TIERS := unit card hsm store app service faults cli radius
TIER_TARGETS := $(addprefix test-,$(TIERS))
.PHONY: $(TIER_TARGETS)

$(TIER_TARGETS): test-%: setup
	$(PY) -m pytest tests/$* $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check otphsm tests bench
	$(PY) -m ruff format --check otphsm tests bench

typecheck: setup
	$(PY) -m mypy

check: lint typecheck test

bench: setup
	@$(PY) -c "import matplotlib" 2>/dev/null || $(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/run.py $(BENCH_ARGS)

proto: setup
	PY=$(PY) bash scripts/proto.sh

proto-check: setup
	PY=$(PY) bash scripts/proto.sh --check

demo: setup
	$(PY) -m otphsm.cli.main demo

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis

# The container images and the deployments of deploy/ (README "Deployment"). Podman runs them
# with deploy/containers.conf (CONTAINERS_CONF). BASE_IMAGE: a registry's debian:bookworm-slim
# where one is reachable; by default a local debootstrap image (deploy/base-image.sh), made
# when missing. EXTRA_CA: a CA bundle pip trusts inside the build (default: $PIP_CERT).
# `make deploy-tools` installs podman, debootstrap, runc and podman-compose (the ordinary
# `make setup` does not).
.PHONY: image base-image compose-up compose-down kube-up kube-down test-deploy deploy-tools

export CONTAINERS_CONF ?= $(abspath deploy/containers.conf)
BASE_IMAGE ?= localhost/debian:bookworm
IMAGE ?= localhost/otphsm:latest
DEV_IMAGE ?= localhost/otphsm-dev:latest
POSTGRES_IMAGE ?= localhost/otphsm-postgres:latest
EXTRA_CA ?= $(PIP_CERT)
PODMAN_BUILD = podman build --runtime runc --format docker --build-arg BASE_IMAGE=$(BASE_IMAGE)
COMPOSE ?= $(abspath $(VENV))/bin/podman-compose

deploy-tools:
	@OTPHSM_DEPLOY_TOOLS=1 VENV='$(VENV)' bash scripts/setup.sh

base-image:
	@command -v podman >/dev/null || { echo "podman is missing: make deploy-tools" >&2; exit 1; }
	@case '$(BASE_IMAGE)' in localhost/*) bash deploy/base-image.sh '$(BASE_IMAGE)';; esac

image: base-image
	@if [ -n '$(EXTRA_CA)' ]; then cp '$(EXTRA_CA)' deploy/.extra-ca.pem; else : > deploy/.extra-ca.pem; fi
	$(PODMAN_BUILD) --build-arg EXTRA_CA=deploy/.extra-ca.pem -f deploy/Containerfile --target server -t $(IMAGE) .
	$(PODMAN_BUILD) --build-arg EXTRA_CA=deploy/.extra-ca.pem -f deploy/Containerfile --target dev -t $(DEV_IMAGE) .
	$(PODMAN_BUILD) -f deploy/postgres.Containerfile -t $(POSTGRES_IMAGE) deploy
	@for i in $(IMAGE) $(DEV_IMAGE) $(POSTGRES_IMAGE); do \
	    podman image inspect --format "$$i {{.Size}} bytes" $$i; done

compose-up: deploy-tools image
	COMPOSE=$(COMPOSE) bash deploy/compose-up.sh

compose-down:
	cd deploy && $(COMPOSE) down --volumes

kube-up: image
	bash deploy/kube/play.sh up

kube-down:
	bash deploy/kube/play.sh down

test-deploy: deploy-tools
	$(PY) -m pytest -m deploy tests/deploy $(PYTEST_ARGS)

# Dockyard: the two commands are `make up` (run the platform) and `make test` (run every test).
SHELL := /bin/bash
.DEFAULT_GOAL := help
export TURBO_TELEMETRY_DISABLED := 1
export CHECKPOINT_DISABLE := 1

.PHONY: help install generate up down logs test check bench status

help:
	@echo "make up      install what is missing, build, start Docker/NATS/registry, every service and the gateway"
	@echo "make test    run every test (unit + integration against real PostgreSQL, NATS, Docker, registry)"
	@echo "make down    stop what make up started      make logs   follow the logs"

install: ## packages from Debian and npm, then generated code
	deploy/local/install.sh
	pnpm install --frozen-lockfile
	$(MAKE) generate

generate:
	pnpm exec turbo run generate --output-logs=errors-only

up: install
	deploy/local/infra.sh up dockerd nats registry
	deploy/local/images.sh all
	deploy/local/stack.sh up

down:
	deploy/local/stack.sh down
	deploy/local/infra.sh down

status:
	deploy/local/infra.sh status
	deploy/local/stack.sh status

logs:
	tail -n 50 -F .run/logs/*.log

check: ## types and contracts
	pnpm exec tsc -p tsconfig.json
	pnpm --filter @dockyard/contracts run check

test: install
	deploy/local/test.sh

bench:
	node --import tsx bench/gateway/run.ts

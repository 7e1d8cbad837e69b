# Smart Expense Tracker — developer commands. The logic lives in scripts/; see each
# script's header for details. `make help` lists the targets.

CARGO ?= cargo
export CARGO

.DEFAULT_GOAL := help
.PHONY: help test run run-check api-fuzz fmt lint schema db-install db-start db-stop db-status

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /  make \1\t/' | expand -t 20

test: ## fmt check, clippy, the tests on a throwaway SecantusDB then a throwaway nx-27017 (TEST_SERVERS; or once on MONGODB_URI), schemathesis
	@bash scripts/test.sh

run: ## build and run the five subgraphs and the router (local SecantusDB unless MONGODB_URI is set)
	@bash scripts/run.sh

run-check: ## check `make run`: the stack on free ports, the walkthrough's alert email in its mailbox
	@bash scripts/run-check.sh

api-fuzz: ## schemathesis against the REST shim's OpenAPI document, on a throwaway stack
	@bash scripts/api-fuzz.sh

fmt: ## format the code
	$(CARGO) fmt --all

lint: ## clippy, warnings are errors
	$(CARGO) clippy --workspace --all-targets -- -D warnings

schema: ## rewrite schema/*.graphql from the code
	@bash scripts/export-schema.sh

db-install: ## install both local servers (SecantusDB into .venv-secantus/, nx-27017 into .venv/)
	@bash scripts/localdb.sh install --server all

db-start: ## start the local server on 127.0.0.1:27017 (SecantusDB, or LOCALDB_SERVER=nx; data in .data/<server>)
	@bash scripts/localdb.sh start

db-stop: ## stop the local server on port 27017
	@bash scripts/localdb.sh stop

db-status: ## which local servers are running?
	@bash scripts/localdb.sh status || true

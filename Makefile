# The two commands a new machine needs are `make demo` and `make test` (see README).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint unit stack-up stack-down clean

install:
	bash infra/bootstrap.sh

demo: install
	$(BIN)/cadenza demo

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy bench/*.py  # apart: bench/etl.py and bench/gateway.py share names with packages

test: install lint
	$(BIN)/pytest

unit:
	$(BIN)/pytest -m "not stack and not spark and not e2e"

stack-up:
	$(BIN)/cadenza stack up

stack-down:
	$(BIN)/cadenza stack down

clean:
	-$(BIN)/cadenza stack down
	rm -rf .cadenza

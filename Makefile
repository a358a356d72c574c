# The two commands a new machine needs are `make demo` and `make test` (see README).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint unit lock upgrade stack-up stack-down clean

install:
	bash infra/bootstrap.sh

demo: install
	$(BIN)/cadenza demo

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: install lint
	$(BIN)/pytest

unit:
	$(BIN)/pytest -m "not stack and not spark and not e2e"

# requirements.lock (+ requirements-build.lock) from pyproject.toml; `make install` installs
# exactly it. `make lock` keeps every pin pyproject.toml still allows; `make upgrade` moves
# every package to its newest allowed version, `make upgrade PACKAGE=name` only that one
# (and what it needs). Then `make test`.
lock:
	bash infra/lock.sh

upgrade:
	bash infra/lock.sh $(if $(PACKAGE),--upgrade-package $(PACKAGE),--upgrade)

stack-up:
	$(BIN)/cadenza stack up

stack-down:
	$(BIN)/cadenza stack down

clean:
	-$(BIN)/cadenza stack down
	rm -rf .cadenza

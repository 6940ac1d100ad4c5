# The two commands (see README.md): `make demo` runs the main job, `make test` the whole suite.
# Both install what they need first (scripts/setup.sh is idempotent).
.PHONY: demo test test-unit lint setup setup-ls

demo: setup-ls
	.venv/bin/smartsize demo

test: setup-ls
	.venv/bin/ruff check .
	.venv/bin/pytest

test-unit: setup
	.venv/bin/pytest -m "not integration and not slow"

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

setup:
	bash scripts/setup.sh

setup-ls:
	bash scripts/setup.sh --label-studio

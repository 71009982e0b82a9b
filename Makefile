.PHONY: venv run test lint bench-serving

venv:
	@bash scripts/bootstrap.sh

run: venv
	@bash scripts/run.sh

test: venv
	.venv/bin/python -m pytest $(PYTEST_ARGS)

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports
	.venv/bin/bandit -c pyproject.toml -r apps config -q

bench-serving: venv
	.venv/bin/python bench/serving.py

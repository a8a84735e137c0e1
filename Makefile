# `make test` and `make demo` work from a fresh clone: they build .venv first.
PY := .venv/bin/python
# This machine's PyTorch lies on its disk; pyproject.toml states the honest range (torch>=2.4).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: setup test test-slow lint demo clean

setup: .venv/.installed

.venv/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

# The quick suite; the slow, whole-process tests run with `make test-slow` (CI runs both).
test: lint
	$(PY) -m pytest -q -m "not slow"

test-slow: setup
	$(PY) -m pytest -q -m slow

demo: setup
	.venv/bin/dacl fit --config experiments/demo.yaml

clean:
	rm -rf .venv lightning_logs .pytest_cache .ruff_cache

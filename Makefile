# Project utility scripts: make test, make test-fast, make lint, make format
.PHONY: test test-fast test-slow lint format

# Python of the project's virtual environment (run.sh creates it)
PYTHON ?= .venv/bin/python
SOURCES := txtai_muvera tests benchmarks examples

# Whole suite: the fast default path, then the slow tests
test:
	bash run.sh test
	bash run.sh test -m slow

# Fast default path (what `bash run.sh test` runs)
test-fast:
	bash run.sh test

# Cluster, crash, fuzz and API tests
test-slow:
	bash run.sh test -m slow

# black and pylint with txtai's settings (.pylintrc); installs nothing: pip install -e .[lint] provides both
lint:
	$(PYTHON) -m black --line-length 150 --check $(SOURCES)
	$(PYTHON) -m pylint --rcfile=.pylintrc txtai_muvera

format:
	$(PYTHON) -m black --line-length 150 $(SOURCES)

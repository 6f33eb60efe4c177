# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create .venv when missing and install into it (torch pinned first, see constraints.txt).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# img2dataset pulls albumentations, which phones home for updates unless told not to.
export NO_ALBUMENTATIONS_UPDATE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test test-slow lint bench clean docker-cpu docker-gpu
IMAGE ?= shardguard

$(STAMP): setup.py constraints.txt $(wildcard indexes/*.c)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt "torch==2.13.0"
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	rm -rf demo-out
	$(BIN)/shardguard sample --output demo-out/data
	$(BIN)/shardguard scan --config configs/demo.yaml
	$(BIN)/shardguard manifest show demo-out/scan

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not gpu" tests

lint: $(STAMP)
	$(BIN)/ruff check .

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow" tests

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_scan_vs_naive.py

clean:
	rm -rf demo-out .pytest_cache build *.egg-info

# Worker images for Dataflow / portable runners; need a Docker engine (none on the CI machines).
docker-cpu:
	@command -v docker >/dev/null && docker info >/dev/null 2>&1 || { echo "no Docker engine here"; exit 1; }
	docker build -f Dockerfile.cpu -t $(IMAGE)/worker-cpu:$$(python3 setup.py --version) .

docker-gpu:
	@command -v docker >/dev/null && docker info >/dev/null 2>&1 || { echo "no Docker engine here"; exit 1; }
	docker build -f Dockerfile.gpu -t $(IMAGE)/worker-gpu:$$(python3 setup.py --version) .

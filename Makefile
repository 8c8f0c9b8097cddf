# Two commands do all setup: `make run` (the app) and `make test` (the tests).
# Every target creates .venv with Python 3.11 if it is missing and installs what is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
GALLERY ?= ./data/gallery
ARGS   ?=

.PHONY: run test test-fast lint format train evaluate bench bench-speed bench-accuracy bench-index bench-oneshot bench-seed bench-hardening bench-milvus-faults milvus-server cache clean

run: $(VENV)/.runtime
	$(PY) app.py --gallery $(GALLERY) $(ARGS)

test: $(VENV)/.dev
	$(PY) -m pytest $(ARGS)

# Under a minute: everything but the tests that start servers, browsers or training (see tests/conftest.py).
test-fast: $(VENV)/.dev
	$(PY) -m pytest -m "not slow and not browser" $(ARGS)

# ruff (the lint rules in pyproject.toml) and mypy on the shipped code; CI runs it before the tests.
lint: $(VENV)/.dev
	$(VENV)/bin/ruff check engine index demo training app.py
	$(VENV)/bin/ruff format --check engine index demo training app.py
	$(VENV)/bin/mypy

format: $(VENV)/.dev
	$(VENV)/bin/ruff check --fix engine index demo training app.py
	$(VENV)/bin/ruff format engine index demo training app.py

cache: $(VENV)/.dev
	$(PY) -m training.data cache

# Trains a recipe from configs/ (default: contrastive only from scratch, 90 minutes; the shipped
# weights are configs/teacher-80.json) into engine/weights/twin.pt, then fits its
# thresholds and calibration and writes the model card engine/weights/twin.json. A recipe that
# distills (the recipe itself says so: `python -m training.recipes needs-teacher NAME`, e.g.
# teacher, teacher-finetune) first caches the teacher's targets (make teacher); an unknown
# recipe stops here. An interrupted run resumes from runs/NAME/resume.pt (ARGS=--fresh: start over).
RECIPE ?= default
train: $(VENV)/.dev
	$(PY) -m training.data cache
	@$(PY) -m training.recipes needs-teacher $(RECIPE); status=$$?; \
	if [ $$status -eq 0 ]; then $(MAKE) teacher ARGS=; elif [ $$status -ne 1 ]; then exit $$status; fi
	$(PY) -m training.train --config $(RECIPE) --out engine/weights/twin.pt $(ARGS)
	$(PY) -m training.evaluate --write-card --plots bench/results

evaluate: $(VENV)/.dev
	$(PY) -m training.evaluate --plots bench/results $(ARGS)

bench: bench-speed bench-accuracy bench-index bench-oneshot bench-seed bench-hardening

bench-speed: $(VENV)/.dev
	$(PY) bench/speed.py $(ARGS)
	$(PY) bench/app_latency.py

bench-accuracy: $(VENV)/.dev
	$(PY) bench/accuracy.py $(ARGS)

bench-index: $(VENV)/.dev
	$(PY) bench/index_scale.py $(ARGS)

bench-oneshot: $(VENV)/.dev
	$(PY) bench/oneshot.py $(ARGS)

bench-seed: $(VENV)/.dev
	$(PY) bench/seed.py $(ARGS)

# The real app under large requests, a photo of 576 faces, 8+4 clients and kill -9 (issue 9);
# bench/results/hardening.md, about 3-5 minutes on 2 cores.
bench-hardening: $(VENV)/.dev
	$(PY) bench/hardening.py $(ARGS)
	$(PY) bench/hardening_people.py

# Server faults (issue 24): the app on a Milvus server that is stopped, restarted and killed -9;
# bench/results/milvus_faults.md, about 3-5 minutes on 2 cores.
bench-milvus-faults: $(VENV)/.dev
	$(PY) bench/milvus_faults.py $(ARGS)

# A local Milvus 2.3.5 standalone server for development, from the `milvus` package (dev
# requirements; no container): data in $(MILVUS_DATA), gRPC on 127.0.0.1:$(MILVUS_PORT), until
# Ctrl+C. Then, in another shell: make run GALLERY=milvus://127.0.0.1:19530/twin_gallery
# Production is deploy/docker-compose.yml (deploy/README.md, "When one machine is not enough").
MILVUS_DATA ?= ./data/milvus-server
MILVUS_PORT ?= 19530
milvus-server: $(VENV)/.dev
	$(PY) tests/milvus_server.py --data $(MILVUS_DATA) --port $(MILVUS_PORT)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(PY)
	$(PY) -m pip install -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt pyproject.toml
	$(PY) -m pip install -r requirements-dev.txt
	$(PY) -m pip install --no-deps --no-build-isolation -e .
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache

# Teacher targets for distillation: dlib's encoder over the cached crops of the training sets,
# in .venv-bench (requirements-bench.txt), one core, resumable. `make teacher ARGS="--shard 0/2"`
# shares the work between processes. Never needed by `make test`.
BENCH_VENV := .venv-bench
BENCH_PY   := $(BENCH_VENV)/bin/python

.PHONY: teacher teacher-report
teacher: $(BENCH_VENV)/.teacher $(VENV)/.dev
	$(PY) -m training.data cache
	nice -n 10 $(BENCH_PY) -m training.teacher $(ARGS)
	$(BENCH_PY) -m training.teacher --status

# The teacher's own LFW accuracy (bench/results/teacher.md). It needs the teacher's embeddings of
# LFW, which `make teacher` leaves out (hours on CPU): first `make teacher ARGS="--sets lfw"`.
teacher-report: $(BENCH_VENV)/.teacher
	$(BENCH_PY) -m training.teacher --report

$(BENCH_VENV)/.teacher: requirements.txt requirements-bench.txt
	test -x $(BENCH_PY) || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_PY) -m pip install -r requirements.txt -r requirements-bench.txt
	$(BENCH_PY) -m pip install --no-deps face_recognition
	$(BENCH_PY) -m pip install --no-deps --no-build-isolation -e .
	touch $@

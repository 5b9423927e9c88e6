# Two commands do everything on a fresh machine:
#   make demo   install into .venv if needed, then run the main job on the embedded default data
#   make test   install into .venv if needed, then run the test suite
VENV ?= .venv
STAMP := $(VENV)/.toto-installed
ARGS ?=

.PHONY: install demo test test-fast bench clean

$(STAMP): setup.py setup.cfg requirements/base.txt requirements/ros.txt requirements/assets.txt requirements/nodeps.txt scripts/install.sh
	VENV=$(VENV) bash scripts/install.sh
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	MUJOCO_GL=$${MUJOCO_GL:-egl} $(VENV)/bin/toto-robot demo $(ARGS)

test: $(STAMP)
	VENV=$(VENV) bash scripts/run_tests.sh $(ARGS)

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do case $$b in *gpu*) continue;; esac; MUJOCO_GL=$${MUJOCO_GL:-egl} $(VENV)/bin/python $$b || exit 1; done  # bench_gpu_mfu.py needs a GPU

clean:
	rm -rf build install log *.egg-info .pytest_cache

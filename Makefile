# `make test`: build .venv if needed, install the stack and the package, run
# the whole test suite. `make test-fast`: the same, without the tests marked
# `slow` (pytest.ini). `make quickstart`: same environment, then the main job.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stack-installed

.PHONY: test test-fast test-matrix quickstart smoke install clean

$(STAMP): requirements/runtime.txt requirements/tests.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip 'setuptools<80' wheel
	$(PY) -m pip install -r requirements/runtime.txt -r requirements/tests.txt
	touch $(STAMP)

# A plain (non-editable) install, as a user gets it: mim then finds the
# package's configs and tools in mmscalekd/.mim. Reinstalled on every run so
# the installed copy matches the source.
install: $(STAMP)
	$(PY) -m pip install --no-deps --no-build-isolation --force-reinstall --quiet .

test: install
	$(PY) -m pytest tests

test-fast: install
	$(PY) -m pytest -m "not slow" tests

# The main job: the paper's claim tested on the digits (teachers pre-trained
# on 25/50/100% of a pool, three students x seeds per teacher), report in
# work_dirs/quickstart/report.md. `tools/quickstart.py --fast` is shorter.
quickstart: install
	$(PY) tools/quickstart.py --work-dir work_dirs/quickstart

# The smoke distillation through mim, as a user of the installed package.
# It writes where a plain `mim train` of the config writes (mmengine's
# default, work_dirs/<config name>), so README's `mim test` reads its
# checkpoints (tests/test_readme.py checks that the two agree).
smoke: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" mim train mmscalekd \
		configs/smoke/scalekd_smoke_synthetic.py \
		--work-dir work_dirs/scalekd_smoke_synthetic

# Not part of `make test` (nor of CI): the short suite of
# tools/misc/test_matrix.py on the first and last supported releases of each
# dependency, each combination in a fresh venv under work_dirs/test_matrix
# (needs the package registry; README.md, "Tested versions").
test-matrix:
	$(PYTHON) tools/misc/test_matrix.py

clean:
	rm -rf build dist *.egg-info mmscalekd/.mim

# convattn_mm -- set-up, main job and tests.
#
#   make demo    set up .venv and run the main job on the embedded default
#   make test    set up .venv and run the test suite (CPU)
#   make mutation  mutation scores of the core modules and the C++ kernel
#                (long: not part of `make test`)
#
# Set-up is incremental: each step leaves a stamp in .venv/ and is skipped
# when the stamp is newer than its requirements file.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMPS := $(VENV)/.stamps

.PHONY: setup setup-full demo test test-slow bench bench-convert bench-digits \
	bench-longrange bench-throughput bench-gpu bench-check flops gallery \
	mutation clean-venv
setup: $(STAMPS)/package

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMPS)/torch: requirements/torch.txt | $(VENV)/bin/python
	$(PIP) install -r requirements/torch.txt
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/base: requirements/base.txt requirements/tests.txt requirements/mim.txt $(STAMPS)/torch
	$(PIP) install -r requirements/base.txt -r requirements/tests.txt -r requirements/mim.txt
	$(PIP) install --no-deps openmim==0.3.9
	# mmcv-lite and the full mmcv install the same module: keep a full build
	# when one is there (see `make setup-full`), else add the lite one.
	$(PY) tools/misc/ensure_mmcv.py --pip "$(PIP)"
	$(PIP) install --no-build-isolation natten==0.21.7
	@touch $@

$(STAMPS)/package: setup.py setup.cfg tools/misc/mim_extension.py $(STAMPS)/base
	# a legacy develop install: mim finds tools/ and configs/ through it
	$(PIP) install --no-build-isolation --no-deps --no-use-pep517 -e .
	# build the C++ attention kernel ahead of time (else: on first use)
	$(PY) -c "from convattn_mm.ops import fused_cpu; print('kernel:', fused_cpu.build())" \
	  || echo "no C++ kernel: the 'gather' backend will be used"
	@touch $@

# the downstream stack (full mmcv built once and cached, mmdet, mmpose):
# see docs/downstream.md
setup-full: $(STAMPS)/full

$(STAMPS)/full: requirements/downstream.txt tools/misc/setup_full.sh tools/misc/build_mmcv.sh $(STAMPS)/package
	bash tools/misc/setup_full.sh $(PY)
	@touch $@

demo: setup
	$(PY) tools/demo.py

test: setup setup-full
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m "not slow" tests

test-slow: setup setup-full
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m slow tests

bench: setup
	$(PY) benchmarks/bench_attention.py --json work_dirs/bench_attention.json

bench-convert: setup
	$(PY) benchmarks/bench_convert.py --json work_dirs/bench_convert.json

bench-digits: setup
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench_digits.py --seeds 5 --epochs 20 \
	  --json work_dirs/bench_digits.json

bench-longrange: setup
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench_longrange.py \
	  --json work_dirs/bench_longrange.json

bench-gpu: setup
	$(PY) benchmarks/bench_gpu.py --json work_dirs/bench_gpu.json

bench-throughput: setup
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench_throughput.py \
	  --json work_dirs/bench_throughput.json

# release check (not part of `make test`): exit 1 when a speed target of
# the benchmarks is missed; run on an idle machine
bench-check: setup
	status=0; \
	$(PY) benchmarks/bench_attention.py --check --skip-memory \
	  --json work_dirs/bench_attention_check.json || status=1; \
	$(PY) benchmarks/bench_convert.py --check \
	  --json work_dirs/bench_convert_check.json || status=1; \
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench_throughput.py --check \
	  --json work_dirs/bench_throughput_check.json || status=1; \
	exit $$status

flops: setup
	$(PY) tools/get_flops.py configs/convattn_net/convattnnet-tiny_8xb128_in1k.py

# attention figures of the demo model (run `make demo` first) and of a
# conv-converted CNN before/after fine-tuning, into docs/gallery/
gallery: setup
	$(PY) tools/make_gallery.py

# mutmut on ops/windows.py, models/encodings, models/layers and convert, each
# against its own tests; then hand-written mutants of the C++ kernel (work
# split and borders) and of bugs that once survived the suite
mutation: setup
	OMP_NUM_THREADS=1 $(PY) tools/misc/mutation.py --out work_dirs/mutation
	$(PY) tools/misc/mutate_kernel.py --python-mutants \
	  --json work_dirs/mutation/kernel.json

clean-venv:
	rm -rf $(VENV)

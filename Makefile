# Thin wrapper around CMake and its presets (CMakePresets.json): the README's commands.
#   make demo      build and run the examples
#   make test      the everyday tier: every test of behaviour (CTest label
#                  quick) in one gcc build with the engine's invariant checks
#                  on; a couple of minutes (docs/testing.md)
#   make check     everything, what CI runs: make test's build with all its
#                  tests (valgrind, the spin models, the mutation check, the
#                  torture test, the etcd cluster, packaging and install), then
#                  clang ASan+UBSan and clang TSan builds, a TSan build on the
#                  portable waiting layer, and a Windows build (mingw-w64)
#                  whose tests run under wine; nothing may skip
#   make bench     build the benchmarks (without the checks) and run them
#   make install   PREFIX=/usr/local
JOBS   ?= $(shell nproc)
PREFIX ?= /usr/local
CMAKE  ?= cmake
CTEST  ?= ctest

BUILD         = build
BUILD_RELEASE = build-release
BUILD_ASAN    = build-asan
BUILD_TSAN    = build-tsan
BUILD_PARK    = build-tsan-parking
BUILD_MINGW   = build-mingw

.PHONY: all build release demo test check bench plots install clean

all: build

build:
	$(CMAKE) --preset default >/dev/null
	$(CMAKE) --build --preset default -j $(JOBS)

release:
	$(CMAKE) --preset release -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	$(CMAKE) --build --preset release -j $(JOBS)

demo: build
	@for p in $(BUILD)/examples/*; do \
		[ -f "$$p" ] && [ -x "$$p" ] || continue; \
		echo "==> $$p"; "$$p" || exit 1; echo; \
	done

$(BUILD_ASAN)/.configured:
	$(CMAKE) --preset asan >/dev/null
	touch $@

$(BUILD_TSAN)/.configured:
	$(CMAKE) --preset tsan >/dev/null
	touch $@

$(BUILD_PARK)/.configured:
	$(CMAKE) --preset tsan-parking >/dev/null
	touch $@

$(BUILD_MINGW)/.configured:
	$(CMAKE) --preset mingw >/dev/null
	touch $@

test: build
	@tests/run_suites.sh --label quick "$(CTEST)" $(JOBS) "quick tier, gcc with invariant checks:$(BUILD)"

check: build
	@tests/require_tools.sh
	$(MAKE) --no-print-directory $(BUILD_ASAN)/.configured $(BUILD_TSAN)/.configured \
		$(BUILD_PARK)/.configured $(BUILD_MINGW)/.configured
	$(CMAKE) --build --preset asan -j $(JOBS)
	$(CMAKE) --build --preset tsan -j $(JOBS)
	$(CMAKE) --build --preset tsan-parking -j $(JOBS)
	$(CMAKE) --build --preset mingw -j $(JOBS)
	@# wine makes its prefix on first use: once, here, not by two tests at once
	@wineboot -i >/dev/null 2>&1; wineserver -w
	@tests/run_suites.sh --no-skips "$(CTEST)" $(JOBS) \
		"gcc, invariant checks, valgrind, models, mutants:$(BUILD)" \
		"clang asan+ubsan:$(BUILD_ASAN)" "clang tsan:$(BUILD_TSAN)" \
		"clang tsan, waiting layer parking:$(BUILD_PARK)" \
		"windows (mingw-w64), under wine:$(BUILD_MINGW)"

bench: release
	@for p in $(BUILD_RELEASE)/bench/bench_*; do [ -x "$$p" ] && { echo "==> $$p"; "$$p"; }; done

# make plots: runs the thread and Python benches and redraws docs/img/*.png
# (bench/plots.py; needs matplotlib: Debian's python3-matplotlib).
PLOT_PYTHON ?= /usr/bin/python3
plots: build release
	mkdir -p $(BUILD_RELEASE)/plots
	$(BUILD_RELEASE)/bench/bench_mt parts=23 data=$(BUILD_RELEASE)/plots > $(BUILD_RELEASE)/plots/bench_mt.txt
	PYTHONPATH=$(BUILD)/python python3 bench/bench_python.py > $(BUILD_RELEASE)/plots/bench_python.txt
	$(PLOT_PYTHON) bench/plots.py $(BUILD_RELEASE)/plots docs/img

install: release
	$(CMAKE) --install $(BUILD_RELEASE) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(BUILD_RELEASE) $(BUILD_ASAN) $(BUILD_TSAN) $(BUILD_PARK) $(BUILD_MINGW)

# make docs: the reference manual, HTML in docs/html, from the comments of the
# public headers (doxygen). The man pages are docs/man/*.3, written by hand.
DOXYGEN ?= doxygen
FIFOLOCK_VERSION = $(shell awk '/define FIFOLOCK_VERSION_STRING/ { gsub(/"/, "", $$3); print $$3 }' include/fifolock.h)

.PHONY: docs

docs:
	FIFOLOCK_VERSION=$(FIFOLOCK_VERSION) $(DOXYGEN) docs/Doxyfile
	@echo "docs/html/index.html"

# make fuzz: fuzz the engine for FUZZ_SECONDS with libFuzzer (clang), from the
# seed corpus in tests/fuzz/corpus; new inputs and crashes go to build-fuzz/.
# make check-mutants: build in each deliberate bug, require the tests to fail.
FUZZ_SECONDS ?= 60

.PHONY: fuzz check-mutants

fuzz:
	@bash tests/fuzz/run_fuzz.sh $(FUZZ_SECONDS) build-fuzz

check-mutants:
	@JOBS=$(JOBS) bash tests/mutants/run_mutants.sh

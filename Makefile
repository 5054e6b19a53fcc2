# Thin wrapper over CMake. The two commands a newcomer needs:
#   make demo   install what is missing, build, run the main job
#   make test   install what is missing, build (ASan+UBSan, warnings as errors), run every test
JOBS   ?= $(shell nproc)
BUILD  ?= build
ABUILD ?= build-asan
CMAKE_FLAGS ?=
FUZZ_SECONDS ?= 60

.PHONY: all deps build build-asan demo test tsan conformance bench benches fuzz clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	@cmake -S . -B $(ABUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHELIUM_SANITIZE=ON -DHELIUM_WERROR=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(ABUILD) -j $(JOBS)

demo: build
	@bash scripts/demo.sh $(BUILD)

test: build-asan
	@cd $(ABUILD) && ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS)

# ThreadSanitizer build in build-tsan/: the engine's KV copy-out race and the
# KV-transfer cluster test (make test runs it as the ctest `tsan`)
tsan: deps
	@bash tests/tsan/run.sh build-tsan

# Regenerates tests/conformance vectors with llama.cpp (llama-cpp-python from PyPI).
conformance: build
	@bash tests/conformance/run.sh $(BUILD)

bench: build
	@bash bench/engine $(BUILD)

# the benchmark programs (bench/CMakeLists.txt), outside the default build
benches: build
	@cmake --build $(BUILD) --target benches -j $(JOBS)

# libFuzzer targets built with clang in build-fuzz/, each run FUZZ_SECONDS
# after replaying tests/fuzz/regress and the seed corpora (tests/fuzz/README.md)
fuzz: deps
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_BUILD=$(CURDIR)/build-fuzz FUZZ_JOBS=$(JOBS) bash tests/fuzz/run.sh

clean:
	rm -rf $(BUILD) $(ABUILD) build-fuzz build-tsan $(ABUILD)-tsan

# The two quick-start commands (README.md):
#   make demo   install what is missing, build, run the arena demo
#   make test   install what is missing, build, run every test, then again under
#               ASan+UBSan, then the threaded tests under TSan
# And:
#   make test-tsan     the tests that use threads and child processes, under ThreadSanitizer
#   make test-stress   the whole release suite $(STRESS_RUNS) times in a row while CPU hogs keep every core busy
#   make fuzz          every libFuzzer target (tests/fuzz/) for $(FUZZ_SECONDS) s each, built with clang-14
BUILD ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
JOBS ?= 2
STRESS_RUNS ?= 3
FUZZ_BUILD ?= build-fuzz
# Unity builds (CMake UNITY_BUILD): each target's sources compile a few to a
# file, so the templates every file instantiates (Asio, nlohmann/json, fmt)
# are compiled once per batch instead of once per file. The release build
# takes about 40% less time, which keeps `make test` inside CI's budget. UNITY=OFF
# for file-by-file builds (a quicker rebuild after editing one file).
UNITY ?= ON
# Debug information: line tables only (-g1) by default. Backtraces, crash
# traces and sanitizer reports still name functions, files and lines; a
# debugger shows no local variables. Compiling full information (-g) takes
# about a quarter longer. DEBUG_INFO=-g for a build to debug in.
DEBUG_INFO ?= -g1
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= fuzz_appup fuzz_manifest fuzz_runtime_config fuzz_admin_request fuzz_framing fuzz_handover_decode
# The test programs that run threads or child processes (the live server, the
# CLI against a daemon, the arena, the host's loader and executor, the
# rehearsal, the handover) carry the ctest label `threaded`: hotswap_add_test's
# THREADED (tests/CMakeLists.txt). TSan builds and runs only those.
TSAN_LABEL ?= threaded

# Fatal signals stay with the program under the sanitizers: tests check the
# host's own crash line and that a probe child dies of SIGSEGV, which the
# sanitizers' handlers would otherwise turn into a report and exit(1).
SANITIZER_SIGNALS = handle_segv=0:handle_sigbus=0:handle_sigfpe=0:handle_sigill=0

.PHONY: deps build build-asan build-tsan build-fuzz demo test test-release test-asan test-tsan test-stress fuzz bench clean

deps:
	@./scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_UNITY_BUILD=$(UNITY) \
	  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO='-O2 $(DEBUG_INFO) -DNDEBUG' -DCMAKE_C_FLAGS_RELWITHDEBINFO='-O2 $(DEBUG_INFO) -DNDEBUG'
	cmake --build $(BUILD) -j$(JOBS)

build-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DHOTSWAP_SANITIZE=ON -DCMAKE_UNITY_BUILD=$(UNITY) \
	  -DCMAKE_CXX_FLAGS_DEBUG='$(DEBUG_INFO)' -DCMAKE_C_FLAGS_DEBUG='$(DEBUG_INFO)'
	cmake --build $(ASAN_BUILD) -j$(JOBS) --target hotswap_tests

build-tsan: deps
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHOTSWAP_TSAN=ON -DCMAKE_UNITY_BUILD=$(UNITY) \
	  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO='-O1 $(DEBUG_INFO) -DNDEBUG' -DCMAKE_C_FLAGS_RELWITHDEBINFO='-O1 $(DEBUG_INFO) -DNDEBUG'
	cmake --build $(TSAN_BUILD) -j$(JOBS) --target hotswap_threaded_tests

# Only the fuzz targets and what they need, with ASan+UBSan and libFuzzer (CMakeLists.txt, HOTSWAP_FUZZ).
build-fuzz: deps
	CC=clang-14 CXX=clang++-14 cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHOTSWAP_FUZZ=ON
	cmake --build $(FUZZ_BUILD) -j$(JOBS)

demo: build
	./scripts/demo.sh $(BUILD)

test-release: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

test-asan: build-asan
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:$(SANITIZER_SIGNALS) UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j$(JOBS)

# Every process (test programs and the daemons they start) writes its reports
# to tsan-reports/; the first report ends that process, and any report fails the run.
test-tsan: build-tsan
	@rm -rf $(TSAN_BUILD)/tsan-reports && mkdir -p $(TSAN_BUILD)/tsan-reports
	cd $(TSAN_BUILD) && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 $(subst :, ,$(SANITIZER_SIGNALS)) log_path=$(CURDIR)/$(TSAN_BUILD)/tsan-reports/report" \
	  ctest --output-on-failure -j$(JOBS) -L '^$(TSAN_LABEL)$$'; status=$$?; \
	  if [ -n "$$(ls tsan-reports)" ]; then cat tsan-reports/*; echo "TSan reported data races (above)"; exit 1; fi; \
	  exit $$status

test: test-release test-asan test-tsan

# Timing-dependent tests fail here: a busy loop per core competes with the suite.
test-stress: build
	@hogs=""; \
	trap 'kill $$hogs 2>/dev/null' EXIT; \
	trap 'exit 130' INT TERM; \
	for i in $$(seq $$(nproc)); do yes >/dev/null & hogs="$$hogs $$!"; done; \
	echo "test-stress: $$(nproc) CPU hogs running; the suite runs $(STRESS_RUNS) times"; \
	for run in $$(seq $(STRESS_RUNS)); do \
	  start=$$(date +%s); \
	  (cd $(BUILD) && ctest --output-on-failure -j$(JOBS)) || { echo "test-stress: run $$run failed"; exit 1; }; \
	  echo "test-stress: run $$run of $(STRESS_RUNS) passed in $$(( $$(date +%s) - start )) s"; \
	done

# Each target starts from its seeds (tests/fuzz/corpus/<target>/, never written)
# plus what earlier runs found ($(FUZZ_BUILD)/corpus/<target>/, where new inputs
# go). A crash, leak or broken invariant stops the run: the input is saved as
# $(FUZZ_BUILD)/crashes/<target>/crash-*; make it a Catch2 regression test.
fuzz: build-fuzz
	@for target in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$target $(FUZZ_BUILD)/crashes/$$target; \
	  echo "fuzz: $$target for $(FUZZ_SECONDS) s"; \
	  $(FUZZ_BUILD)/tests/fuzz/$$target -max_total_time=$(FUZZ_SECONDS) -max_len=16384 -timeout=10 \
	    -artifact_prefix=$(FUZZ_BUILD)/crashes/$$target/ $(FUZZ_BUILD)/corpus/$$target tests/fuzz/corpus/$$target \
	    2>$(FUZZ_BUILD)/$$target.log || { tail -n 60 $(FUZZ_BUILD)/$$target.log; echo "fuzz: $$target failed"; exit 1; }; \
	  grep -E '^(#[0-9]+[[:space:]]+DONE|Done [0-9]+ runs)' $(FUZZ_BUILD)/$$target.log | tail -n 1; \
	done

bench: build
	./$(BUILD)/bench/hotswap_bench

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)

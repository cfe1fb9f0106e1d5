# The two quick-start commands (README.md):
#   make demo   install what is missing, build, run the arena demo
#   make test   install what is missing, build, run every test, then again under ASan+UBSan
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= 2

.PHONY: deps build build-asan demo test test-release test-asan bench clean

deps:
	@./scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD) -j$(JOBS)

build-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DHOTSWAP_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j$(JOBS) --target hotswap_tests

demo: build
	./scripts/demo.sh $(BUILD)

test-release: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

test-asan: build-asan
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j$(JOBS)

test: test-release test-asan

bench: build
	./$(BUILD)/bench/hotswap_bench

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

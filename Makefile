# fiberio — build, test and install.
#   make deps    install the Debian packages fiberio needs (as root), or say how
#   make         build build/fiberio/core.so (what `make install` ships)
#   make test    deps + a test build (build-test/) + the whole busted suite;
#                ends with "N passed, M failed"
#   make check   the layering, rockspec and luacheck checks, then the suite under
#                ASan+UBSan and ThreadSanitizer (fails on any report)
#   make bench   the benchmarks in bench/
#   make demo    run an example that shows what fiberio does
#   make install install with luarocks (Lua 5.4)
#   make dist    the release tarball and source rock, of HEAD
#   make docs    docs/REFERENCE.md from the editor types (library/)

LUA      ?= lua5.4
LUA_INC  ?= /usr/include/lua5.4
LUA_LIB  ?= -llua5.4
CC       ?= gcc
CFLAGS   ?= -O2 -g
WARN      = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter -Icsrc
PIC       = -fPIC -fvisibility=hidden
# liburing linked in (Debian's liburing-dev has the archive): one shared
# library fewer to load at require, about 50 µs of a script's start-up.
LIBS      = -l:liburing.a -lpthread

BUILD    ?= build
# The C sources, layer by layer (docs/ARCHITECTURE.md; tools/layers.sh
# checks that calls only go down).
LAYERS    = util io core par lib
SRCS      = $(foreach l,$(LAYERS),$(wildcard csrc/$(l)/*.c))
HDRS      = $(foreach l,$(LAYERS),$(wildcard csrc/$(l)/*.h))
OBJS      = $(SRCS:csrc/%.c=$(BUILD)/obj/%.o)
# The specs and the sanitizer runs use a test build: the stand-ins for
# kernels and situations the specs cannot otherwise reach (util/config.h)
# are compiled in. The default build has none.
TEST_DEFS = -DFIBERIO_TEST_HOOKS
SO        = $(BUILD)/fiberio/core.so

# Debian packages: what the build and the tests need; the peers the
# benchmarks measure against; valgrind for `make valgrind`.
DEB_BUILD = gcc make pkg-config lua5.4 liblua5.4-dev liburing-dev lua-busted luarocks lua-filesystem attr zip
DEB_BENCH = lua-luv lua-cqueues wrk nginx-light
DEB_VALGRIND = valgrind
DEB_CHECK = lua-check
DEB_DIST = zip

TEST_BUILD = build-test
ASAN_BUILD = build-asan
ASAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all $(TEST_DEFS)

.PHONY: all deps test check bench demo install clean valgrind layers rockcheck lint docs dist

all: $(SO) $(BUILD)/noring $(BUILD)/host $(BUILD)/failalloc.so $(BUILD)/forktest.so

# A test tool: runs a command with io_uring refused by seccomp.
$(BUILD)/noring: tools/noring.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -Wall -o $@ $<

# A test tool: a C host that runs a script in a new Lua state and closes it.
$(BUILD)/host: tools/host.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -Wall -I$(LUA_INC) -o $@ $< $(LUA_LIB)

# A test tool: preloaded, it fails allocations of one size (FAIL_ALLOC_SIZE).
$(BUILD)/failalloc.so: tools/failalloc.c
	@mkdir -p $(dir $@)
	$(CC) -shared -fPIC -O2 -Wall -o $@ $< -ldl

# A test tool: a Lua module that forks (require "forktest").
$(BUILD)/forktest.so: tools/forktest.c
	@mkdir -p $(dir $@)
	$(CC) -shared -fPIC -O2 -Wall -I$(LUA_INC) -o $@ $<

# The flags a build directory was made with: a change rebuilds every object.
FLAGS_STAMP = $(BUILD)/.flags
$(FLAGS_STAMP): FORCE
	@mkdir -p $(dir $@)
	@echo '$(CC) $(CFLAGS) $(PIC) $(DEFS) $(LDFLAGS)' | cmp -s - $@ || echo '$(CC) $(CFLAGS) $(PIC) $(DEFS) $(LDFLAGS)' >$@
.PHONY: FORCE
FORCE:

$(BUILD)/obj/%.o: csrc/%.c $(HDRS) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) $(DEFS) $(PIC) -I$(LUA_INC) -c $< -o $@

$(SO): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared $(CFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(LIBS)

deps:
	@sh tools/deps.sh $(DEB_BUILD)

test: deps
	@$(MAKE) --no-print-directory all BUILD=$(TEST_BUILD) DEFS="$(TEST_DEFS)"
	@sh tools/runspecs.sh $(TEST_BUILD)

TSAN_BUILD = build-tsan
# TSan: no instrumentation of function entry and exit. Lua unwinds the C
# stack with longjmp on every error and every yield across C, and an
# instrumented frame left that way is never popped from TSan's shadow stack,
# which then overflows. (Reports show the racing accesses' own frames.)
TSAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=thread --param=tsan-instrument-func-entry-exit=0 $(TEST_DEFS)
# The whole suite runs under TSan on the threads backend (the pool under
# every operation), and fio.parallel's specs on io_uring too (worker
# threads with rings). tools/runspecs.sh starts Lua with the TSan runtime
# and $(TSAN_BUILD)/longjmp_shim.so preloaded; see tools/longjmp_shim.c.
TSAN_SPECS_RING = spec/parallel_spec.lua spec/walk_spec.lua spec/process_spec.lua

$(TSAN_BUILD)/longjmp_shim.so: tools/longjmp_shim.c
	@mkdir -p $(TSAN_BUILD)
	$(CC) -shared -fPIC -O1 -o $@ $<

# The shipping build holds no test hook, the layers call only down, the
# rockspec lists every source.
layers: all
	@sh tools/layers.sh $(BUILD)
	@if strings $(SO) | grep -E 'FIBERIO_(TEST|NO_RING|THREADS_)'; then \
	  echo "layers: the shipping build $(SO) holds the test hooks above" >&2; exit 1; \
	else echo "layers: $(SO) holds no test hook"; fi

rockcheck:
	@sh tools/rockcheck.sh

# luacheck over the Lua of the tree (.luacheckrc), clean.
lint: deps
	@sh tools/deps.sh $(DEB_CHECK)
	@luacheck --no-color -q . && echo "lint: luacheck clean"

# docs/REFERENCE.md from the editor types (spec/annotations_spec.lua checks
# that it is up to date).
docs:
	$(LUA) tools/gendoc.lua library/fiberio.lua > docs/REFERENCE.md

# The release tarball and source rock (of HEAD: commit first).
dist: deps
	@sh tools/deps.sh $(DEB_DIST)
	@sh tools/dist.sh

check: deps layers rockcheck lint
	@$(MAKE) --no-print-directory all BUILD=$(ASAN_BUILD) CFLAGS="$(ASAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined"
	@FIBERIO_SANITIZE=asan sh tools/runspecs.sh $(ASAN_BUILD)
	@$(MAKE) --no-print-directory all $(TSAN_BUILD)/longjmp_shim.so BUILD=$(TSAN_BUILD) CFLAGS="$(TSAN_FLAGS)" LDFLAGS="-fsanitize=thread"
	@FIBERIO_SANITIZE=tsan FIBERIO_TEST_BACKENDS=threads sh tools/runspecs.sh $(TSAN_BUILD)
	@FIBERIO_SANITIZE=tsan FIBERIO_TEST_BACKENDS=io_uring sh tools/runspecs.sh $(TSAN_BUILD) $(TSAN_SPECS_RING)

valgrind: deps
	@sh tools/deps.sh $(DEB_VALGRIND)
	@$(MAKE) --no-print-directory all BUILD=$(TEST_BUILD) DEFS="$(TEST_DEFS)"
	@FIBERIO_SANITIZE=valgrind FIBERIO_TEST_RING_POLL_WAIT=1 sh tools/runspecs.sh $(TEST_BUILD)

bench: deps all
	@sh tools/deps.sh $(DEB_BENCH)
	@sh bench/run.sh

DEMO_ENV = LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$(BUILD)/?.so;;"

demo: deps all
	@$(DEMO_ENV) $(LUA) examples/demo.lua
	@echo "--- examples/treesum.lua /usr/share/lua/5.1/busted (sha256sum-compatible, files read concurrently)"
	@$(DEMO_ENV) $(LUA) examples/treesum.lua /usr/share/lua/5.1/busted

install: deps
	luarocks --lua-version 5.4 make fiberio-0.1.0-1.rockspec

clean:
	rm -rf $(BUILD) $(TEST_BUILD) $(ASAN_BUILD) $(TSAN_BUILD)

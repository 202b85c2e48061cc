# fiberio — build, test and install.
#   make deps    install the Debian packages fiberio needs (as root), or say how
#   make         build build/fiberio/core.so
#   make test    deps + build + the whole busted suite; ends with "N passed, M failed"
#   make check   the suite again under ASan+UBSan (fails on any report)
#   make bench   the benchmarks in bench/
#   make demo    run an example that shows what fiberio does
#   make install install with luarocks (Lua 5.4)

LUA      ?= lua5.4
LUA_INC  ?= /usr/include/lua5.4
CC       ?= gcc
CFLAGS   ?= -O2 -g
WARN      = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter
PIC       = -fPIC
LIBS      = -luring -lpthread

BUILD    ?= build
SRCS      = $(wildcard csrc/*.c)
HDRS      = $(wildcard csrc/*.h)
OBJS      = $(SRCS:csrc/%.c=$(BUILD)/obj/%.o)
SO        = $(BUILD)/fiberio/core.so

# Debian packages: what the build and tests need, and the peers the benchmarks
# measure against.
DEB_BUILD = gcc make pkg-config lua5.4 liblua5.4-dev liburing-dev lua-busted luarocks
DEB_BENCH = lua-luv lua-cqueues valgrind
DEB_PKGS  = $(DEB_BUILD) $(DEB_BENCH)

ASAN_BUILD = build-asan
ASAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all

.PHONY: all deps test check bench demo install clean valgrind

all: $(SO) $(BUILD)/noring

# A test tool: runs a command with io_uring refused by seccomp.
$(BUILD)/noring: tools/noring.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -Wall -o $@ $<

$(BUILD)/obj/%.o: csrc/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) $(PIC) -I$(LUA_INC) -c $< -o $@

$(SO): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared $(CFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(LIBS)

deps:
	@sh tools/deps.sh $(DEB_PKGS)

test: deps
	@$(MAKE) --no-print-directory all
	@sh tools/runspecs.sh $(BUILD)

TSAN_BUILD = build-tsan
TSAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=thread
# TSan runs fio.parallel's specs (worker threads, their loops, the pool under
# them) on both backends. Not the rest, for two reasons found out the hard
# way: TSan's shadow stack overflows on the yield-heavy specs (lua5.4 is not
# instrumented, so the longjmp of every lua_yieldk leaves frames behind), and
# specs that start helpers through env/timeout/noring crash those tools once
# the TSan runtime is preloaded into them.
TSAN_SPECS = spec/parallel_spec.lua

check: deps
	@$(MAKE) --no-print-directory all BUILD=$(ASAN_BUILD) CFLAGS="$(ASAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined"
	@FIBERIO_SANITIZE=asan sh tools/runspecs.sh $(ASAN_BUILD)
	@$(MAKE) --no-print-directory all BUILD=$(TSAN_BUILD) CFLAGS="$(TSAN_FLAGS)" LDFLAGS="-fsanitize=thread"
	@FIBERIO_SANITIZE=tsan sh tools/runspecs.sh $(TSAN_BUILD) $(TSAN_SPECS)

valgrind: deps all
	@FIBERIO_SANITIZE=valgrind sh tools/runspecs.sh $(BUILD)

bench: deps all
	@sh bench/run.sh

DEMO_ENV = LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$(BUILD)/?.so;;"

demo: deps all
	@$(DEMO_ENV) $(LUA) examples/demo.lua
	@echo "--- examples/treesum.lua /usr/share/lua/5.1/busted (sha256sum-compatible, files read concurrently)"
	@$(DEMO_ENV) $(LUA) examples/treesum.lua /usr/share/lua/5.1/busted

install: deps
	luarocks --lua-version 5.4 make fiberio-scm-1.rockspec

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD)

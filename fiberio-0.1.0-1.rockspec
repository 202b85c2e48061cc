rockspec_format = "3.0"
package = "fiberio"
version = "scm-1"
source = {
  url = "git+file:///dev/null", -- built from a checkout: luarocks make
}
description = {
  summary = "Async I/O for Lua 5.4: fibers with async/await/cancel over io_uring",
  detailed = [[
fiberio gives Lua 5.4 scripts fibers (coroutines scheduled by a C runtime)
with async, await and real cancellation, and file, pipe and timer operations
that run on Linux io_uring, one ring per thread.
]],
  license = "MIT",
  labels = { "io_uring", "async", "coroutines", "linux" },
}
supported_platforms = { "linux" }
dependencies = { "lua >= 5.4, < 5.5" }
external_dependencies = {
  URING = { header = "liburing.h", library = "uring" },
}
build = {
  type = "builtin",
  modules = {
    ["fiberio"] = "lua/fiberio/init.lua",
    ["fiberio.check"] = "lua/fiberio/check.lua",
    ["fiberio.sync"] = "lua/fiberio/sync.lua",
    ["fiberio.fs"] = "lua/fiberio/fs.lua",
    ["fiberio.process"] = "lua/fiberio/process.lua",
    ["fiberio.watch"] = "lua/fiberio/watch.lua",
    ["fiberio.socket"] = "lua/fiberio/socket.lua",
    ["fiberio.core"] = {
      sources = {
        "csrc/util/config.c", "csrc/util/fd.c", "csrc/util/process.c", "csrc/util/spawn.c",
        "csrc/io/exec.c", "csrc/io/oppool.c", "csrc/io/pool.c",
        "csrc/io/threads.c", "csrc/io/uring.c", "csrc/io/walk.c", "csrc/core/loop.c",
        "csrc/core/op.c", "csrc/par/marshal.c", "csrc/par/workers.c",
        "csrc/lib/errno.c", "csrc/lib/fiber.c", "csrc/lib/file.c", "csrc/lib/fs.c",
        "csrc/lib/module.c", "csrc/lib/parallel.c", "csrc/lib/sync.c",
        "csrc/lib/time.c", "csrc/lib/walk.c", "csrc/lib/process.c",
        "csrc/lib/watch.c", "csrc/lib/socket.c",
      },
      defines = { "_GNU_SOURCE" },
      incdirs = { "csrc", "$(URING_INCDIR)" },
      -- (liburing linked in, as the Makefile does: a faster start-up)
      libraries = { ":liburing.a", "pthread" },
      libdirs = { "$(URING_LIBDIR)" },
    },
  },
}

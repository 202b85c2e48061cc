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
    ["fiberio.core"] = {
      sources = {
        "csrc/core.c", "csrc/loop.c", "csrc/fiber.c", "csrc/time.c",
        "csrc/file.c", "csrc/backend_uring.c", "csrc/exec.c",
        "csrc/pool.c", "csrc/backend_threads.c", "csrc/fs.c", "csrc/sync.c",
        "csrc/parallel.c", "csrc/errno.c",
      },
      defines = { "_GNU_SOURCE" },
      libraries = { "uring", "pthread" },
      incdirs = { "$(URING_INCDIR)" },
      libdirs = { "$(URING_LIBDIR)" },
    },
  },
}

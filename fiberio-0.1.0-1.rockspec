rockspec_format = "3.0"
package = "fiberio"
version = "0.1.0-1"
-- The release tarball (make dist). `luarocks make` in a checkout builds the
-- checkout instead; the source rock (make dist) carries the tarball, so
-- `luarocks install fiberio-0.1.0-1.src.rock` needs no network.
source = {
  url = "https://github.com/fiberio/fiberio/releases/download/v0.1.0/fiberio-0.1.0.tar.gz",
  dir = "fiberio-0.1.0",
}
description = {
  summary = "Async I/O for Lua 5.4: fibers with async/await/cancel over io_uring",
  detailed = [[
fiberio gives Lua 5.4 scripts fibers (coroutines scheduled by a C runtime)
with async, await and real cancellation, and file, pipe and timer operations
that run on Linux io_uring, one ring per thread.
]],
  license = "MIT",
  homepage = "https://github.com/fiberio/fiberio",
  maintainer = "the fiberio authors",
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
    ["fiberio.group"] = "lua/fiberio/group.lua",
    ["fiberio.fs"] = "lua/fiberio/fs.lua",
    ["fiberio.process"] = "lua/fiberio/process.lua",
    ["fiberio.watch"] = "lua/fiberio/watch.lua",
    ["fiberio.socket"] = "lua/fiberio/socket.lua",
    ["fiberio.core"] = {
      sources = {
        "csrc/util/child.c", "csrc/util/config.c", "csrc/util/fd.c", "csrc/util/process.c", "csrc/util/spawn.c",
        "csrc/util/zero.c",
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
  -- the LuaLS type definitions (library/: point .luarc.json's
  -- workspace.library at it) and the reference, into the rock's directory
  copy_directories = { "library", "docs" },
}
-- `luarocks test`: busted, with the checkout's .busted (Lua 5.4, the paths
-- set). A "command" rather than type "busted", which would require the
-- busted rock: Debian's lua-busted is not one, and needs no network.
test = {
  type = "command",
  command = "busted",
}

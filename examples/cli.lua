-- cli.lua — what the example tools share as command-line tools: --help and
-- --version, and a progress line on stderr when it is a terminal. Each tool
-- loads it from beside itself:
--
--   local cli = dofile((arg[0]:match("^(.*)/") or ".") .. "/cli.lua")
local cli = {}

-- --help or --version among the options in args (up to "--", or with
-- operands_end, up to the first argument that is not an option): print
-- the usage line and what the tool does, or the version, and exit 0.
function cli.standard_options(prog, usage, about, args, operands_end)
  for _, a in ipairs(args) do
    if a == "--" or (operands_end and a:sub(1, 1) ~= "-") then break end
    if a == "--help" then
      io.stdout:write("usage: ", prog, " ", usage, "\n", about, "\n")
      os.exit(0)
    elseif a == "--version" then
      local fio = require "fiberio"
      io.stdout:write(prog, ".lua (fiberio's examples) ", fio._VERSION:match("%S+$"), "\n")
      os.exit(0)
    end
  end
end

-- The tool's usage(msg): "prog: msg" and the usage line on stderr, then
-- exit with status (default 2, as coreutils on bad usage); with about, the
-- lines that say what the tool does follow the usage line.
function cli.usage(prog, usage, about, status)
  return function(msg)
    if msg then io.stderr:write(prog, ": ", msg, "\n") end
    io.stderr:write("usage: ", prog, " ", usage, "\n", about and about .. "\n" or "")
    os.exit(status or 2)
  end
end

local function human(n)
  local units = { "B", "KiB", "MiB", "GiB", "TiB" }
  local u = 1
  while n >= 1024 and u < #units do
    n = n / 1024
    u = u + 1
  end
  return u == 1 and ("%d B"):format(n) or ("%.1f %s"):format(n, units[u])
end

-- Whether stderr is a terminal.
local function stderr_is_tty()
  local fio = require "fiberio"
  local target = fio.readlink("/proc/self/fd/2")
  return target ~= nil and (target:match("^/dev/pts/") or target:match("^/dev/tty")) ~= nil
end

-- A progress line ("12,345 files, 1.2 GiB, 250.3 MiB/s, 4.9 s") rewritten
-- in place on stderr at most four times a second, when stderr is a
-- terminal and not quiet: p:update(files, bytes) as work is done,
-- p:done() to erase it before the tool's last words.
function cli.progress(quiet)
  local fio = require "fiberio"
  local p = { on = not quiet and stderr_is_tty(), t0 = fio.now(), next = 0, shown = false }
  function p:update(files, bytes)
    if not self.on then return end
    local now = fio.now()
    if now < self.next then return end
    self.next = now + 0.25
    local dt = now - self.t0
    io.stderr:write(("\r%d files, %s, %s/s, %.1f s\27[K"):format(files, human(bytes),
      human(dt > 0 and bytes / dt or 0), dt))
    self.shown = true
  end
  function p:done()
    if self.shown then io.stderr:write("\r\27[K") end
    self.shown = false
  end
  return p
end

return cli

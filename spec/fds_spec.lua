-- The fds fiberio makes for itself (the loop's wake eventfd, the io_uring
-- ring, the threads backend's epoll set, a Signal's signalfd) are 3 or
-- above (issue 12, item 8): with stdin closed (lua5.4 script.lua <&-) the
-- kernel hands out 0 first, and an internal fd there would alias fio.stdin.
-- Each case runs in a child started with some of 0, 1 and 2 closed.
local helper = require "helper"
local fio = helper.fio
if helper.backend_gate(describe, it, pending) then return end

-- Run code in a child lua5.4 (this process's backend and module paths)
-- with the redirections redir; its stdout goes to a file whatever fd 1 is
-- (the code writes its report to REPORT, a path). Returns the report and
-- the exit code.
local function run(code, redir)
  local report = os.tmpname()
  local _, rc = helper.child(("local REPORT = %q\n"):format(report) .. code, { redirect = redir })
  local out = helper.get(report) or ""
  os.remove(report)
  return out, rc
end

-- What the child reports: the backend, what fds 0 to 2 are (readlink of
-- /proc/self/fd/N, or "closed"), every fiberio fd below 3, and what
-- fio.stdin:read("a") and io.stdin:read("a") return.
local PROBE = [[
local fio = require "fiberio"
local lfs = require "lfs"
local s <close> = fio.signal("USR1")
fio.run(function() fio.sleep(0) assert(fio.readfile("/proc/self/stat")) end)
local function what(n)
  return lfs.symlinkattributes("/proc/self/fd/" .. n, "target") or "closed"
end
local function str(...)
  local t = table.pack(...)
  for i = 1, t.n do t[i] = tostring(t[i]) end
  return table.concat(t, ",")
end
local low = {}
for n = 0, 2 do
  local t = what(n)
  if t:match("^anon_inode:") then low[#low + 1] = n .. "=" .. t end
end
local fin, iin = str(fio.stdin:read("a")), str(io.stdin:read("a"))
-- (opened last: with 0, 1 or 2 closed, it takes one of them)
local out = assert(io.open(REPORT, "w"))
out:write("backend ", fio.backend(), "\n")
out:write("internal below 3: ", table.concat(low, " "), "\n")
out:write("fio.stdin ", fin, "\n")
out:write("io.stdin ", iin, "\n")
out:close()
]]

describe("fiberio's own fds", function()
  it("are 3 or above with stdin closed, and fio.stdin reads as io.stdin does", function()
    local out, rc = run(PROBE, "<&-")
    assert.equal(0, rc, out)
    assert.matches("backend " .. fio.backend() .. "\n", out, 1, true)
    assert.matches("internal below 3: \n", out, 1, true)
    local io_res = out:match("\nio%.stdin ([^\n]*)")
    assert.equal("nil,Bad file descriptor,9", io_res)
    assert.equal(io_res, out:match("\nfio%.stdin ([^\n]*)"))
  end)

  it("are 3 or above with stdin, stdout and stderr closed", function()
    local out, rc = run(PROBE, "<&- >&- 2>&-")
    assert.equal(0, rc, out)
    assert.matches("internal below 3: \n", out, 1, true)
    assert.equal(out:match("\nio%.stdin ([^\n]*)"), out:match("\nfio%.stdin ([^\n]*)"))
  end)

  it("a fio.parallel worker's loop makes none below 3 either", function()
    local out, rc = run([[
      local fio = require "fiberio"
      local lfs = require "lfs"
      local low = {}
      fio.run(function()
        fio.parallel(function()
          local fio_ = require "fiberio"
          fio_.sleep(0)
          return true
        end):await()
      end)
      for n = 0, 2 do
        local t = lfs.symlinkattributes("/proc/self/fd/" .. n, "target") or "closed"
        if t:match("^anon_inode:") then low[#low + 1] = n .. "=" .. t end
      end
      local f = assert(io.open(REPORT, "w"))
      f:write("internal below 3: ", table.concat(low, " "), "\n")
      f:close()
    ]], "<&- >&- 2>&-")
    assert.equal(0, rc, out)
    assert.equal("internal below 3: \n", out)
  end)
end)

-- The loop under pressure: a ring far smaller than the work (full SQ, CQ
-- overflow), a process stopped and continued while it waits (EINTR), the
-- config contract, and the packaging that installs the core.
local helper = require "helper"
local fio = helper.fio

describe("a tiny ring", function()
  it("runs 2,000 concurrent pipe round trips through 4 SQ entries without losing a completion", function()
    local out, code = helper.child([[
      local fio = require "fiberio"
      fio.config{ ring_entries = 4 }
      local N = 2000
      local got = fio.run(function()
        local pipes, readers = {}, {}
        for i = 1, N do
          local r, w = fio.pipe()
          pipes[i] = { r, w }
          readers[i] = fio.async(function() return r:read(8) end)
        end
        fio.yield() -- every reader is now blocked in the kernel
        for i = 1, N do pipes[i][2]:write(string.format("%08d", i)) end
        local ok = 0
        for i = 1, N do
          if readers[i]:await() == string.format("%08d", i) then ok = ok + 1 end
          pipes[i][1]:close(); pipes[i][2]:close()
        end
        return ok
      end)
      print("ok", got)
    ]])
    assert.equal(0, code, out)
    assert.equal("ok\t2000\n", out)
  end)

  it("cancels 1,000 blocked reads through a 4-entry ring", function()
    local out, code = helper.child([[
      local fio = require "fiberio"
      fio.config{ ring_entries = 4 }
      local n = fio.run(function()
        local fs, ends = {}, {}
        for i = 1, 1000 do
          local r, w = fio.pipe()
          ends[i] = { r, w }
          fs[i] = fio.async(function() return r:read(1) end)
        end
        fio.yield()
        local canceled = 0
        for i = 1, #fs do
          local v, why = fs[i]:cancel()
          if v == nil and why == fio.Canceled then canceled = canceled + 1 end
        end
        return canceled
      end)
      print("canceled", n)
    ]])
    assert.equal(0, code, out)
    assert.equal("canceled\t1000\n", out)
  end)
end)

describe("a process stopped and continued while it waits", function()
  it("still finishes its sleep and its pipe read correctly", function()
    local out, code = helper.child([[
      local fio = require "fiberio"
      local pid = io.open("/proc/self/stat"):read("l"):match("^(%d+)")
      -- A shell in the background stops and continues us twice.
      os.execute("(sleep 0.05; kill -STOP " .. pid .. "; sleep 0.05; kill -CONT " .. pid ..
                 "; sleep 0.05; kill -STOP " .. pid .. "; kill -CONT " .. pid .. ") &")
      local r, w = fio.pipe()
      local res = fio.run(function()
        local reader = fio.async(function() return r:read(3) end)
        fio.sleep(0.3)
        w:write("abc")
        return reader:await()
      end)
      print(res)
    ]])
    assert.equal(0, code, out)
    assert.equal("abc\n", out)
  end)
end)

describe("fio.config", function()
  it("raises once the loop has started", function()
    fio.sleep(0)
    assert.has_error(function() fio.config{ threads = 2 } end)
  end)

  it("rejects an unknown backend name with a clear error", function()
    local out = helper.child([[
      local fio = require "fiberio"
      print(pcall(fio.config, { backend = "epoll" }))
    ]])
    assert.matches("field 'backend' must be \"auto\", \"io_uring\" or \"threads\"", out, 1, true)
  end)

  it("takes ring_entries before first use", function()
    local out, code = helper.child([[
      local fio = require "fiberio"
      fio.config{ ring_entries = 8, threads = 1 }
      print(fio.run(function() fio.sleep(0.001) return fio.backend() end))
    ]])
    assert.equal(0, code, out)
    assert.equal((helper.wanted_backend() or "io_uring") .. "\n", out)
  end)
end)

describe("packaging", function()
  it("the rockspec builds every C source of the core", function()
    local f = assert(io.open("fiberio-0.1.0-1.rockspec"))
    local spec = f:read("a")
    f:close()
    local p = assert(io.popen("find csrc -name '*.c'"))
    local n = 0
    for file in p:lines() do
      n = n + 1
      assert.truthy(spec:find('"' .. file .. '"', 1, true), file .. " is missing from the rockspec")
    end
    p:close()
    assert.is_true(n >= 5)
  end)
end)

-- Structured concurrency: fio.group(), g:async, g:wait, g:cancel.
-- (DESIGN.md section 1.)
local helper = require "helper"
local fio = helper.fio
if helper.backend_gate(describe, it, pending) then return end
local pack = helper.pack
local LONG = helper.LONG

describe("fio.group", function()
  it("g:async returns a Future whose results can be awaited", function()
    fio.run(function()
      local g = fio.group()
      local f = g:async(function(x, y) return x * 2, nil, y end, 21, "y")
      assert.equal("userdata", type(f))
      assert.is_true(g:wait())
      assert.is_true(f:done())
      assert.same(pack(42, nil, "y"), pack(f:await()))
    end)
  end)

  it("g:wait awaits every member and returns true when all succeeded", function()
    local log, rec = helper.log()
    fio.run(function()
      local g = fio.group()
      for _, s in ipairs({ 0.03, 0.01, 0.02 }) do
        g:async(function() fio.sleep(s) rec(s) end)
      end
      assert.same({}, log)
      assert.same(pack(true), pack(g:wait()))
      rec("waited")
    end)
    assert.same({ 0.01, 0.02, 0.03, "waited" }, log)
  end)

  it("g:wait on an empty group returns true", function()
    assert.is_true(fio.run(function() return fio.group():wait() end))
  end)

  it("starts members in FIFO order when the caller suspends", function()
    local log, rec = helper.log()
    fio.run(function()
      local g = fio.group()
      for i = 1, 4 do g:async(function() rec(i) end) end
      rec("spawned")
      g:wait()
    end)
    assert.same({ "spawned", 1, 2, 3, 4 }, log)
  end)

  it("a group whose member fails cancels its siblings and re-raises the error from wait", function()
    local e = { "member failed" }
    local c1, c2 = helper.closer("sibling 1"), helper.closer("sibling 2")
    local s1, s2, bad
    local dt, r = helper.timed(fio.run, function()
      local g = fio.group()
      s1 = g:async(function()
        local guard <close> = c1
        fio.sleep(LONG)
      end)
      bad = g:async(function() fio.sleep(0.01) error(e) end)
      s2 = g:async(function()
        local guard <close> = c2
        fio.sleep(LONG)
      end)
      return pcall(g.wait, g)
    end)
    assert.is_false(r[1])
    assert.is_true(rawequal(e, r[2]))
    assert.is_true(rawequal(fio.Canceled, c1.err))
    assert.is_true(rawequal(fio.Canceled, c2.err))
    assert.same(pack(nil, fio.Canceled), pack(fio.await(s1)))
    assert.same(pack(nil, fio.Canceled), pack(fio.await(s2)))
    assert.same({ false, e }, { pcall(fio.await, bad) })
    assert.is_true(dt < helper.bound(1), "took " .. dt)
  end)

  it("re-raises a string error from a member unchanged", function()
    local ok, err = pcall(fio.run, function()
      local g = fio.group()
      g:async(function() error("member", 0) end)
      g:async(fio.sleep, LONG)
      return g:wait()
    end)
    assert.same({ false, "member" }, { ok, err })
  end)

  it("re-raises the first error in time, not the first member's", function()
    local early, late = { "early" }, { "late" }
    fio.run(function()
      local g = fio.group()
      -- Member 1 fails later: its shield holds off the cancel, and it raises
      -- before its next suspension point.
      local m1 = g:async(function()
        fio.shield(fio.sleep, 0.03)
        error(late)
      end)
      g:async(function() fio.sleep(0.005) error(early) end)
      local ok, err = pcall(g.wait, g)
      assert.is_false(ok)
      assert.is_true(rawequal(early, err))
      local ok1, err1 = pcall(fio.await, m1)
      assert.is_false(ok1)
      assert.is_true(rawequal(late, err1))
    end)
  end)

  it("keeps the results of a member that finished before a sibling failed", function()
    fio.run(function()
      local g = fio.group()
      local quick = g:async(function() return "quick", 1 end)
      g:async(function() fio.sleep(0.01) error("fail", 0) end)
      assert.same({ false, "fail" }, { pcall(g.wait, g) })
      assert.same(pack("quick", 1), pack(quick:await()))
    end)
  end)

  it("g:cancel cancels every member and awaits them all", function()
    local log, rec = helper.log()
    local closers = {}
    local fs = {}
    fio.run(function()
      local g = fio.group()
      for i = 1, 3 do
        closers[i] = helper.closer("member " .. i, rec)
        fs[i] = g:async(function()
          local guard <close> = closers[i]
          fio.sleep(LONG)
        end)
      end
      fio.sleep(0.005)
      local dt = helper.timed(g.cancel, g)
      rec("cancel returned")
      assert.is_true(dt < helper.bound(0.05), "cancel took " .. dt)
    end)
    table.sort(log, function(a, b) return a < b end)
    assert.same({ "cancel returned", "member 1", "member 2", "member 3" }, log)
    for i = 1, 3 do
      assert.is_true(fs[i]:done())
      assert.is_true(rawequal(fio.Canceled, closers[i].err))
      assert.same(pack(nil, fio.Canceled), pack(fs[i]:await()))
    end
  end)

  it("g:cancel awaits members before returning", function()
    local log, rec = helper.log()
    fio.run(function()
      local g = fio.group()
      g:async(function()
        local ok = pcall(fio.sleep, LONG)
        fio.shield(fio.sleep, 0.02) -- cleanup I/O after the cancel
        rec("member cleaned up")
        assert(not ok)
      end)
      fio.sleep(0.005)
      g:cancel()
      rec("cancel returned")
    end)
    assert.same({ "member cleaned up", "cancel returned" }, log)
  end)

  it("g:cancel of members that have not started keeps their bodies from running", function()
    local ran = 0
    fio.run(function()
      local g = fio.group()
      for _ = 1, 3 do g:async(function() ran = ran + 1 end) end
      g:cancel()
    end)
    assert.equal(0, ran)
  end)

  it("g:wait works from the main chunk", function()
    local log, rec = helper.log()
    local g = fio.group()
    g:async(function() fio.sleep(0.01) rec("a") end)
    g:async(function() rec("b") end)
    assert.is_true(g:wait())
    assert.same({ "b", "a" }, log)
  end)

  it("a member may add members while g:wait runs, and wait awaits them too", function()
    local log, rec = helper.log()
    fio.run(function()
      local g = fio.group()
      g:async(function()
        fio.sleep(0.005)
        g:async(function() fio.sleep(0.02) rec("added member") end)
        rec("first member")
      end)
      assert.is_true(g:wait())
      rec("waited")
    end)
    assert.same({ "first member", "added member", "waited" }, log)
  end)

  it("canceling the fiber in g:wait raises Canceled there", function()
    fio.run(function()
      local g = fio.group()
      local m = g:async(fio.sleep, LONG)
      local waiter = fio.async(function() return g:wait() end)
      fio.sleep(0.005)
      local dt, r = helper.timed(fio.cancel, waiter)
      assert.same(pack(nil, fio.Canceled), r)
      assert.is_true(dt < helper.bound(0.05), "cancel took " .. dt)
      g:cancel()
      assert.is_true(m:done())
    end)
  end)
end)

describe("fio.group{limit = n} bounds what it holds", function()
  it("g:async waits for a free slot when n members run: the producer cannot run ahead", function()
    fio.run(function()
      local g = fio.group { limit = 2 }
      local log, rec = helper.log()
      for i = 1, 4 do
        g:async(function() fio.sleep(0.03 * i) rec("end " .. i) end)
        rec("started " .. i)
      end
      g:wait()
      -- the 3rd and 4th async calls returned only after a member ended
      assert.same({ "started 1", "started 2", "end 1", "started 3", "end 2", "started 4", "end 3", "end 4" }, log)
    end)
  end)

  it("a g:async waiting for a slot is a cancelable suspension point; its fn never runs", function()
    fio.run(function()
      local g = fio.group { limit = 1 }
      g:async(fio.sleep, LONG)
      local ran = false
      local producer = fio.async(function() g:async(function() ran = true end) end)
      fio.sleep(0.01)
      assert.is_false(producer:done())
      assert.same(pack(nil, fio.Canceled), pack(producer:cancel()))
      g:cancel()
      assert.is_false(ran)
    end)
  end)

  it("a canceled slot waiter hands the slot it was given to the next", function()
    fio.run(function()
      local g = fio.group { limit = 1 }
      local first = g:async(fio.sleep, 0.02)
      local a = fio.async(function() g:async(fio.sleep, 0) end)
      local ran = false
      local b = fio.async(function() g:async(function() ran = true end) end)
      fio.sleep(0) -- both wait for the slot, a first
      first:await() -- its end hands the slot to a ...
      a:cancel()     -- ... which is canceled before it runs: b gets it
      b:await()
      g:wait()
      assert.is_true(ran)
    end)
  end)

  it("lets finished members go: only those still running are kept", function()
    fio.run(function()
      local g = fio.group { limit = 4 }
      local seen = setmetatable({}, { __mode = "k" })
      for _ = 1, 200 do seen[g:async(fio.yield)] = true end
      g:wait()
      helper.fullgc()
      assert.is_nil(next(seen), "the group still holds its finished members")
      assert.is_true(g:wait()) -- and still reports as before
    end)
  end)

  it("still re-raises the first error from wait and cancels the members still running", function()
    fio.run(function()
      local g = fio.group { limit = 2 }
      local slow = g:async(fio.sleep, LONG)
      g:async(function() error("first", 0) end)
      local ok, err = pcall(g.wait, g)
      assert.same({ false, "first" }, { ok, err })
      assert.same(pack(nil, fio.Canceled), pack(slow:await()))
    end)
  end)

  it("a walk of /usr/share feeding group{limit = 32} stays under 30 MiB of memory", function()
    if os.getenv("FIBERIO_SANITIZE") then
      pending("RSS bound: a sanitizer's shadow memory and quarantine add far more than the group holds")
      return
    end
    local out = helper.child([[
      local fio = require "fiberio"
      local g = fio.group { limit = 32 }
      local n, m = 0, 0
      for path in fio.walk("/usr/share") do
        n = n + 1
        g:async(function() if fio.lstat(path) then m = m + 1 end end)
      end
      g:wait()
      local hwm = io.open("/proc/self/status"):read("a"):match("VmHWM:%s*(%d+)")
      print(n, m, hwm)
    ]])
    local n, m, kb = out:match("^(%d+)\t(%d+)\t(%d+)\n$")
    assert(n, out)
    assert.is_true(tonumber(n) > 1000, out)
    assert.equal(n, m) -- every member ran
    assert.is_true(tonumber(kb) < 30 * 1024, "peak RSS " .. kb .. " KiB")
  end)
end)

describe("fio.group members canceled through their own future before they ran", function()
  for _, limit in ipairs { false, 2 } do
    it("neither hang g:wait nor hold a turn (limit " .. tostring(limit) .. ")", function()
      fio.run(function()
        local g = fio.group(limit and { limit = limit } or nil)
        local ran = 0
        for _ = 1, 2 do
          local f = g:async(function() ran = ran + 1 end)
          assert.same(pack(nil, fio.Canceled), pack(f:cancel()))
        end
        local f = g:async(function() ran = ran + 1 return "third" end) -- a turn is free again
        assert.is_true(fio.timeout(helper.bound(2), g.wait, g))
        assert.equal(1, ran)
        assert.same(pack("third"), pack(f:await()))
      end)
    end)
  end
end)

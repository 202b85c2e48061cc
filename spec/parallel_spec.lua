-- fio.parallel: Lua on worker threads, each with its own Lua state and loop.
-- Results and errors from workers, the value-copy rules, upvalue refusal, the
-- fiberio API inside a worker, many small tasks, cancellation (before start,
-- and while sleeping, blocked on a pipe or computing), shutdown with tasks
-- still running, and tasks spread over workers. (DESIGN.md section 1,
-- "Fibers and futures", and section 2.)
--
-- A task's function runs in another Lua state: it cannot see this file's
-- locals (the only upvalue it may have is _ENV), so everything it needs is
-- passed as an argument, and it requires fiberio itself.
local helper = require "helper"
local fio = helper.fio
if helper.backend_gate(describe, it, pending) then return end
local pack = helper.pack
local slurp, exists, child, rmtree = helper.get, helper.exists, helper.child, helper.rmtree
local function tmpdir() return helper.mktempdir("parallel") end

-- The whole machine's busy and total CPU time from /proc/stat (clock
-- ticks, all CPUs), or nil: around a measurement, how busy the rest of the
-- machine was.
local function machine_ticks()
  local stat = slurp("/proc/stat") or ""
  local line = stat:match("^cpu%s+([^\n]*)")
  if not line then return nil end
  local v = {}
  for x in line:gmatch("%d+") do v[#v + 1] = tonumber(x) end
  local busy = v[1] + v[2] + v[3] + v[6] + v[7] + (v[8] or 0)
  local cpus = 0
  for _ in stat:gmatch("\ncpu%d") do cpus = cpus + 1 end
  return busy, busy + v[4] + v[5], cpus
end

-- CPUs this process may run on (what nproc says).
local function ncpu()
  local list = (slurp("/proc/self/status") or ""):match("Cpus_allowed_list:%s*([%d,%-]+)")
  local n = 0
  for a, b in (list or ""):gmatch("(%d+)%-?(%d*)") do
    n = n + (b ~= "" and tonumber(b) - tonumber(a) + 1 or 1)
  end
  return math.max(n, 1)
end

-- A canonical description of a value, exact for every type that is copied:
-- integers and floats apart (floats in %a, so every bit counts, -0.0 and NaN
-- included), strings byte for byte, tables with their keys sorted, and the
-- metatable (if any) noted. Source text, so a worker can load it too.
local DESCRIBE = [[
local function d(v)
  local t = type(v)
  if t == "number" then
    if math.type(v) == "integer" then return "i:" .. string.format("%d", v) end
    if v ~= v then return "f:nan" end
    return "f:" .. string.format("%a", v)
  elseif t == "string" then
    return "s:" .. string.format("%q", v)
  elseif t == "table" then
    local parts = {}
    for k, x in next, v do parts[#parts + 1] = d(k) .. "=" .. d(x) end
    table.sort(parts)
    return (getmetatable(v) and "mt" or "") .. "{" .. table.concat(parts, ",") .. "}"
  end
  return t .. ":" .. tostring(v)
end
return function(...)
  local n = select("#", ...)
  local parts = { "n=" .. n }
  for i = 1, n do parts[#parts + 1] = d((select(i, ...))) end
  return table.concat(parts, " ")
end
]]
local describe_values = load(DESCRIBE)()

local function deep(levels, leaf)
  local t = { leaf }
  for _ = 2, levels do t = { t } end
  return t
end

local bytes = {}
for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
bytes = table.concat(bytes)

-- Every kind of value that is copied, in the awkward cases.
local function allowed()
  return {
    { "nil", nil },
    { "booleans", true, false },
    { "integers", 0, 1, -1, math.maxinteger, math.mininteger },
    { "floats that look like integers", 0.0, 1.0, -1.0, 2.0 ^ 53, 1e15 },
    { "floats", -0.0, 0.1, math.pi, 1e308, 5e-324, math.huge, -math.huge, 0 / 0 },
    { "strings", "", "a", "a\0b\0", bytes, ("\0\255x"):rep(1000) },
    { "a 1 MiB string", ("0123456789abcdef"):rep(65536) },
    { "nils in the middle and at the end", 1, nil, "x", nil, nil },
    { "an empty table", {} },
    { "an array of mixed values", { 1, 2.0, "three", true, false, { 6 } } },
    { "a sparse array", { [1] = "a", [3] = "c", [1000] = "z", [-5] = "neg", [0] = "zero" } },
    { "keys of every copied type", {
      [1] = "int", [1.5] = "float", ["k"] = "str", [true] = "t", [false] = "f",
      [math.maxinteger] = "max", [-0.5] = "negfloat", ["a\0b"] = "nul key",
    } },
    { "tables as keys", { [{ 1, 2 }] = "pair", [{ k = { "deep" } }] = { "value" } } },
    { "tables nested 150 deep", deep(150, "bottom") },
    { "a record of records", { user = { name = "ana", id = 7, tags = { "a", "b" }, score = 9.5 }, ok = true } },
  }
end

describe("fio.parallel", function()
  it("returns a Future whose await gives the task's results", function()
    local f = fio.parallel(function(a, b) return a + b, a * b, "x" .. a end, 6, 7)
    assert.equal("userdata", type(f))
    assert.same(pack(13, 42, "x6"), pack(f:await()))
  end)

  it("runs the task in another Lua state, with its own globals", function()
    PARALLEL_SPEC_GLOBAL = "caller's"
    local f = fio.parallel(function()
      local mine = PARALLEL_SPEC_GLOBAL
      PARALLEL_SPEC_GLOBAL = "worker's"
      return mine, type(string.format), type(require)
    end)
    assert.same(pack(nil, "function", "function"), pack(f:await()))
    assert.equal("caller's", PARALLEL_SPEC_GLOBAL)
    PARALLEL_SPEC_GLOBAL = nil
  end)

  it("gives the worker the caller's package.path and package.cpath", function()
    local f = fio.parallel(function() return package.path, package.cpath end)
    assert.same(pack(package.path, package.cpath), pack(f:await()))
  end)

  it("returns every result, nils included, and none when the task returns none", function()
    assert.same(pack(nil, 2, nil, nil), pack(fio.parallel(function() return nil, 2, nil, nil end):await()))
    assert.equal(0, select("#", fio.parallel(function() end):await()))
  end)

  it("returns the same results when awaited twice", function()
    local f = fio.parallel(function() return { 1, "two" }, 3 end)
    local r1 = pack(f:await())
    local r2 = pack(fio.await(f))
    assert.same(pack({ 1, "two" }, 3), r1)
    assert.same(r1, r2)
  end)

  it("reports done() false while the task runs and true after", function()
    local f = fio.parallel(function() require("fiberio").sleep(0.05) return "end" end)
    assert.is_false(f:done())
    fio.sleep(0.01)
    assert.is_false(f:done())
    assert.equal("end", f:await())
    assert.is_true(f:done())
  end)

  it("works inside fio.run and with fio.select", function()
    local r = pack(fio.run(function()
      local slow = fio.parallel(function() require("fiberio").sleep(10) return "slow" end)
      local fast = fio.parallel(function(x) return x end, "fast")
      local r = pack(fio.select(slow, fast))
      assert.same(pack(nil, fio.Canceled), pack(slow:cancel()))
      return table.unpack(r, 1, r.n)
    end))
    assert.same(pack(2, "fast"), r)
  end)

  it("refuses a function that is not a Lua function", function()
    local ok, err = pcall(fio.parallel, print)
    assert.is_false(ok)
    assert.matches("C function", err, 1, true)
    ok, err = pcall(fio.parallel, 42)
    assert.is_false(ok)
    assert.matches("function expected", err, 1, true)
  end)
end)

describe("fio.parallel's function", function()
  it("may use globals through _ENV", function()
    assert.equal("5", fio.parallel(function(x) return tostring(x) end, 5):await())
  end)

  it("is refused at the call when it has an upvalue other than _ENV, naming it", function()
    local captured = 1
    local ran = false
    local ok, err = pcall(fio.parallel, function() ran = true return captured end)
    assert.is_false(ok)
    assert.matches("upvalue", err, 1, true)
    assert.matches("'ran'", err, 1, true)
    assert.is_false(ran)
  end)

  it("is refused even when its upvalue holds a copyable value", function()
    local n = 3
    local ok, err = pcall(fio.parallel, function() return n end)
    assert.is_false(ok)
    assert.matches("upvalue 'n'", err, 1, true)
    assert.matches("only _ENV", err, 1, true)
  end)
end)

describe("fio.parallel copies values", function()
  for _, case in ipairs(allowed()) do
    local name = case[1]
    it("round-trips " .. name .. " exactly, as arguments and as results", function()
      local values = pack(table.unpack(case, 2, #case))
      -- #case stops at the first nil: the cases with nils say how many.
      if name == "nil" then values = pack(nil) end
      if name == "nils in the middle and at the end" then values = pack(1, nil, "x", nil, nil) end
      local want = describe_values(table.unpack(values, 1, values.n))
      local f = fio.parallel(function(src, ...)
        -- described inside the worker: the arguments as they arrived
        return load(src)()(...), ...
      end, DESCRIBE, table.unpack(values, 1, values.n))
      local r = pack(f:await())
      assert.equal(want, r[1], "the arguments as the worker saw them")
      assert.equal(want, describe_values(table.unpack(r, 2, r.n)), "the results as the caller saw them")
    end)
  end

  it("keeps integer and float apart (1 is not 1.0)", function()
    local r = pack(fio.parallel(function(i, x)
      return math.type(i), math.type(x), i, x
    end, 1, 1.0):await())
    assert.same(pack("integer", "float", 1, 1.0), r)
    assert.equal("integer", math.type(r[3]))
    assert.equal("float", math.type(r[4]))
  end)

  it("copies tables: the caller's table is not shared with the worker", function()
    local t = { n = 1, inner = { 1 } }
    local r = fio.parallel(function(t)
      t.n = 2
      t.inner[1] = "changed"
      return t
    end, t):await()
    assert.same({ n = 1, inner = { 1 } }, t)
    assert.same({ n = 2, inner = { "changed" } }, r)
    assert.is_false(rawequal(t, r))
  end)

  it("copies a table reached twice (without a cycle) as two tables", function()
    local shared = { 1 }
    local same, a, b = fio.parallel(function(t)
      return rawequal(t[1], t[2]), t[1], t[2]
    end, { shared, shared }):await()
    assert.is_false(same)
    assert.same({ 1 }, a)
    assert.same({ 1 }, b)
  end)

  it("does not copy metatables, of arguments or of results", function()
    local mt = { __index = function() return "from mt" end }
    local r = pack(fio.parallel(function(t)
      local seen = getmetatable(t) == nil and t.missing == nil and t.x
      return seen, setmetatable({ y = 2 }, { __index = function() return "worker mt" end })
    end, setmetatable({ x = 1 }, mt)):await())
    assert.equal(1, r[1])
    assert.same({ y = 2 }, r[2])
    assert.is_nil(getmetatable(r[2]))
    assert.is_nil(r[2].missing)
  end)

  it("copies a table's raw contents, ignoring __pairs and __index", function()
    local t = setmetatable({ real = 1 }, {
      __pairs = function() return function() return nil end end,
      __index = function() return "virtual" end,
    })
    assert.same({ real = 1 }, fio.parallel(function(t) return t end, t):await())
  end)

  -- The forbidden values, each in a few places: the top level, deep inside a
  -- table, as a key.
  local function forbidden()
    local cycle = {}
    cycle.self = cycle
    local a, b = {}, {}
    a.b, b.a = b, a
    local keycycle = {}
    keycycle[keycycle] = true
    return {
      { "a Lua function", function() end, "a function cannot be copied" },
      { "a C function", print, "a function cannot be copied" },
      { "a function deep in a table", { { { f = print } } }, "a function cannot be copied" },
      { "a function as a key", { [print] = 1 }, "a function cannot be copied" },
      { "a userdata (a file)", io.stdout, "a userdata cannot be copied" },
      { "a fiberio userdata", fio.Canceled, "a userdata cannot be copied" },
      { "a userdata in a table", { out = io.stderr }, "a userdata cannot be copied" },
      { "a thread", coroutine.create(function() end), "a thread cannot be copied" },
      { "a table that contains itself", cycle, "cycle" },
      { "two tables that contain each other", a, "cycle" },
      { "a table that is its own key", keycycle, "cycle" },
      { "tables nested 250 deep", deep(250, 1), "nested too deep" },
    }
  end

  for _, case in ipairs(forbidden()) do
    it("refuses " .. case[1] .. " as an argument, at the call, with a clear message", function()
      local value, msg = case[2], case[3]
      local ok, err = pcall(fio.parallel, function() error("must not run") end, 1, value)
      assert.is_false(ok)
      assert.equal("string", type(err))
      assert.matches("fio.parallel: arguments: ", err, 1, true)
      assert.matches(msg, err, 1, true)
    end)
  end

  -- Each forbidden value made inside the worker, by source text.
  local made_inside = {
    { "a Lua function", "return function() end", "a function cannot be copied" },
    { "a C function", "return print", "a function cannot be copied" },
    { "a function deep in a table", "return { { { f = print } } }", "a function cannot be copied" },
    { "a function as a key", "return { [print] = 1 }", "a function cannot be copied" },
    { "a userdata (a file)", "return io.stdout", "a userdata cannot be copied" },
    { "a fiberio userdata", "return require('fiberio').Canceled", "a userdata cannot be copied" },
    { "a thread", "return coroutine.create(print)", "a thread cannot be copied" },
    { "a table that contains itself", "local t = {} t.self = t return t", "cycle" },
    { "two tables that contain each other", "local a, b = {}, {} a.b, b.a = b, a return 1, a", "cycle" },
    { "tables nested 250 deep", "local t = {} for _ = 1, 250 do t = { t } end return t", "nested too deep" },
  }
  for _, case in ipairs(made_inside) do
    it("refuses " .. case[1] .. " as a result, raising from await", function()
      local f = fio.parallel(function(src) return load(src)() end, case[2])
      local ok, err = pcall(f.await, f)
      assert.is_false(ok)
      assert.equal("string", type(err))
      assert.matches("fio.parallel: results: ", err, 1, true)
      assert.matches(case[3], err, 1, true)
      -- awaiting again raises the same
      local ok2, err2 = pcall(fio.await, f)
      assert.is_false(ok2)
      assert.equal(err, err2)
    end)
  end
end)

describe("an error inside a parallel task", function()
  it("comes back through await, with the worker's traceback appended", function()
    local f = fio.parallel(function()
      local function inner_failing_function() error("boom in worker") end
      inner_failing_function()
    end)
    local ok, err = pcall(f.await, f)
    assert.is_false(ok)
    assert.equal("string", type(err))
    -- the message first, with the position error() gave it
    assert.matches("^[^\n]*parallel_spec%.lua:%d+: boom in worker\n", err)
    assert.matches("stack traceback:", err, 1, true)
    assert.matches("inner_failing_function", err, 1, true)
  end)

  it("keeps a message raised at level 0 as it is, before the traceback", function()
    local ok, err = pcall(function()
      return fio.parallel(function() error("plain", 0) end):await()
    end)
    assert.is_false(ok)
    assert.matches("^plain\nstack traceback:", err)
  end)

  it("reports a runtime error of the VM with its traceback", function()
    local ok, err = pcall(function()
      return fio.parallel(function(t) return t.missing.field end, {}):await()
    end)
    assert.is_false(ok)
    assert.matches("attempt to index a nil value", err, 1, true)
    assert.matches("stack traceback:", err, 1, true)
  end)

  it("raised in a fiber the task awaited, comes back through the task", function()
    local ok, err = pcall(function()
      return fio.parallel(function()
        local fio = require "fiberio"
        return fio.async(function() error("nested boom") end):await()
      end):await()
    end)
    assert.is_false(ok)
    assert.matches("nested boom", err, 1, true)
    assert.matches("stack traceback:", err, 1, true)
  end)

  it("that is a table comes back as a copy of it", function()
    local ok, err = pcall(function()
      return fio.parallel(function() error({ code = 7, why = { "deep" } }) end):await()
    end)
    assert.is_false(ok)
    assert.same({ code = 7, why = { "deep" } }, err)
  end)

  it("that is a number comes back as the same number, integer or float", function()
    local ok, err = pcall(function() return fio.parallel(function() error(42) end):await() end)
    assert.is_false(ok)
    assert.equal(42, err)
    assert.equal("integer", math.type(err))
    ok, err = pcall(function() return fio.parallel(function() error(4.5) end):await() end)
    assert.is_false(ok)
    assert.equal(4.5, err)
  end)

  it("that is a boolean comes back as the same boolean", function()
    local ok, err = pcall(function() return fio.parallel(function() error(false) end):await() end)
    assert.is_false(ok)
    assert.equal(false, err)
  end)

  it("that cannot be copied becomes a message saying so", function()
    local ok, err = pcall(function() return fio.parallel(function() error(print) end):await() end)
    assert.is_false(ok)
    assert.equal("string", type(err))
    assert.matches("error value cannot be copied", err, 1, true)
  end)

  it("raises again, with an equal value, when awaited twice", function()
    local f = fio.parallel(function() error("twice") end)
    local _, e1 = pcall(f.await, f)
    local _, e2 = pcall(f.await, f)
    assert.matches("twice", e1, 1, true)
    assert.equal(e1, e2)
  end)

  it("leaves the worker able to run the next task", function()
    for i = 1, 5 do
      assert.is_false(pcall(function() return fio.parallel(function() error("x") end):await() end))
      assert.equal(i, fio.parallel(function(x) return x end, i):await())
    end
  end)
end)

describe("inside a parallel task", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() rmtree(dir) end)

  it("fio.async fibers run concurrently and are awaited", function()
    local r = pack(fio.parallel(function()
      local fio = require "fiberio"
      local log = {}
      local fs = {}
      for i = 1, 3 do
        fs[i] = fio.async(function()
          log[#log + 1] = "start " .. i
          fio.sleep(0.02 * (4 - i))
          log[#log + 1] = "end " .. i
          return i * 10
        end)
      end
      log[#log + 1] = "spawned"
      local sum = 0
      for i = 1, 3 do sum = sum + fs[i]:await() end
      return sum, log
    end):await())
    assert.equal(60, r[1])
    assert.same({ "spawned", "start 1", "start 2", "start 3", "end 3", "end 2", "end 1" }, r[2])
  end)

  it("file I/O works: write, read back, stat, and readdir", function()
    local r = pack(fio.parallel(function(d)
      local fio = require "fiberio"
      assert(fio.writefile(d .. "/a.txt", "hello from a worker\n"))
      local f = assert(fio.open(d .. "/b.txt", "w"))
      f:write("line 1\n", "line 2\n")
      f:close()
      local back = assert(fio.readfile(d .. "/a.txt"))
      local g = assert(fio.open(d .. "/b.txt"))
      local lines = {}
      for l in g:lines() do lines[#lines + 1] = l end
      g:close()
      local names = {}
      for _, e in ipairs(assert(fio.readdir(d))) do names[#names + 1] = e.name end
      table.sort(names)
      return back, lines, assert(fio.stat(d .. "/b.txt")).size, names
    end, dir):await())
    assert.same(pack("hello from a worker\n", { "line 1", "line 2" }, 14, { "a.txt", "b.txt" }), r)
    -- and the files are there for the caller
    assert.equal("hello from a worker\n", slurp(dir .. "/a.txt"))
    assert.equal("line 1\nline 2\n", slurp(dir .. "/b.txt"))
  end)

  it("a file the caller wrote is read with fio.readfile", function()
    assert(fio.writefile(dir .. "/in", ("x"):rep(100000)))
    local n = fio.parallel(function(p)
      return #assert(require("fiberio").readfile(p))
    end, dir .. "/in"):await()
    assert.equal(100000, n)
  end)

  it("a pipe carries data between two fibers of the task", function()
    local got = fio.parallel(function()
      local fio = require "fiberio"
      local r, w = fio.pipe()
      local reader = fio.async(function() return r:read("a") end)
      w:write("through the pipe")
      w:close()
      local s = reader:await()
      r:close()
      return s
    end):await()
    assert.equal("through the pipe", got)
  end)

  it("fio.parallel itself works (a nested task)", function()
    local r = pack(fio.parallel(function(x)
      local fio = require "fiberio"
      local inner = fio.parallel(function(y) return y * 2, "inner" end, x + 1)
      local a, b = inner:await()
      return a + 1, b
    end, 10):await())
    assert.same(pack(23, "inner"), r)
  end)

  it("a nested task still running when its worker's state closes is canceled, not a crash", function()
    -- Both workers up; task A starts a fiber that submits a nested task B
    -- and awaits it, then computes (so the other worker takes B, which
    -- blocks in os.execute) and returns without awaiting the fiber. The
    -- script ends at once: A's worker closes its state, canceling B's op,
    -- while B still runs.
    local out, rc = child([[
      local fio = require "fiberio"
      fio.config{ threads = 2 }
      local function busy(s) local t = os.clock() while os.clock() - t < s do end end
      local w1, w2 = fio.parallel(busy, 0.1), fio.parallel(busy, 0.1)
      w1:await() w2:await()
      fio.parallel(function()
        local fio = require "fiberio"
        fio.async(function() fio.parallel(function() os.execute("sleep 1") end):await() end)
        fio.yield() fio.yield()
        local t = os.clock() while os.clock() - t < 0.3 do end
      end):await()
      print("end of script")
    ]], { timeout = helper.bound(20) })
    assert.equal(0, rc, out)
    assert.equal("end of script\n", out)
  end)

  it("fio.backend() is the caller's backend", function()
    assert.equal(fio.backend(), fio.parallel(function() return require("fiberio").backend() end):await())
  end)
end)

describe("many parallel tasks", function()
  it("runs 10,000 small tasks, each once, with its own arguments", function()
    -- Every worker started before the fd count (each keeps its ring and
    -- eventfd): as many tasks at once as there could be workers, each
    -- holding its worker for a moment.
    local warm = {}
    for i = 1, 2 * ncpu() do
      warm[i] = fio.parallel(function() require("fiberio").sleep(0.05) end)
    end
    for i = 1, #warm do warm[i]:await() end
    helper.fullgc()
    local fds0 = helper.open_fds()
    local N = 10000
    local fs = {}
    for i = 1, N do
      fs[i] = fio.parallel(function(i, s) return i * 2, s .. "!" end, i, tostring(i))
    end
    local sum = 0
    for i = 1, N do
      local a, b = fs[i]:await()
      assert(a == i * 2 and b == i .. "!", "task " .. i .. " returned " .. tostring(a) .. ", " .. tostring(b))
      sum = sum + a
    end
    assert.equal(N * (N + 1), sum)
    fs = nil -- luacheck: ignore 311 (the handles dropped: collected below)
    helper.fullgc()
    assert.equal(fds0, helper.open_fds())
  end)

  it("tasks that wait on one another do not deadlock the workers", function()
    -- More tasks than workers, each waiting (suspended) for a file the next
    -- one writes, the last one first: only workers that run many tasks as
    -- fibers at once can finish this.
    local n = 8
    local dir = tmpdir()
    local fs = {}
    for i = 1, n do
      fs[i] = fio.parallel(function(d, i, n)
        local fio = require "fiberio"
        -- task i waits for file i to appear, which task i+1 writes after
        -- seeing file i+1 (task n writes its own)
        if i == n then assert(fio.writefile(d .. "/" .. i, "go")) end
        local deadline = fio.now() + 20
        while not fio.stat(d .. "/" .. i) do
          if fio.now() > deadline then error("task " .. i .. " waited in vain") end
          fio.sleep(0.002)
        end
        if i > 1 then assert(fio.writefile(d .. "/" .. (i - 1), "go")) end
        return i
      end, dir, i, n)
    end
    for i = 1, n do assert.equal(i, fs[i]:await()) end
    rmtree(dir)
  end)
end)

describe("canceling a parallel task", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() rmtree(dir) end)

  -- The task's body, given the marker path: a <close> variable writes the
  -- error it was closed with (as "canceled" when it was the worker's
  -- fio.Canceled) to the marker, then the body blocks as `how` says.
  local function blocker(marker, how)
    return fio.parallel(function(marker, how)
      local fio = require "fiberio"
      local guard <close> = setmetatable({}, { __close = function(_, err)
        local f = io.open(marker, "w")
        f:write(rawequal(err, fio.Canceled) and "canceled" or ("closed with " .. tostring(err)))
        f:close()
      end })
      local f = io.open(marker .. ".started", "w")
      f:close()
      if how == "sleep" then
        fio.sleep(10)
      elseif how == "pipe" then
        local r, w = fio.pipe()
        local guard_pipe <close> = setmetatable({}, { __close = function() r:close() w:close() end })
        r:read("a") -- nobody writes: blocks until canceled
      elseif how == "compute" then
        local x = 0
        while true do x = x + 1 end
      end
      return "not canceled"
    end, marker, how)
  end

  local function wait_started(marker)
    local deadline = fio.now() + helper.bound(5)
    while not exists(marker .. ".started") do
      assert(fio.now() < deadline, "the task did not start")
      fio.sleep(0.002)
    end
    fio.sleep(0.01) -- into its sleep, read or loop
  end

  for _, how in ipairs { "sleep", "pipe", "compute" } do
    local what = ({ sleep = "sleeping", pipe = "blocked on a pipe it created", compute = "computing in a loop that never suspends" })[how]
    it("interrupts a task " .. what .. ": it sees Canceled, cancel gives nil, fio.Canceled", function()
      local marker = dir .. "/marker"
      local f = blocker(marker, how)
      wait_started(marker)
      local dt, r = helper.timed(f.cancel, f)
      assert.same(pack(nil, fio.Canceled), r)
      assert.is_true(dt < helper.bound(0.5), "cancel took " .. dt .. " s")
      assert.equal("canceled", slurp(marker))
      assert.is_true(f:done())
      -- again: the same answer, at once
      assert.same(pack(nil, fio.Canceled), pack(f:cancel()))
      assert.same(pack(nil, fio.Canceled), pack(f:await()))
    end)
  end

  it("reaches a computing task when it comes while another fiber of the worker computes", function()
    -- The task starts a fiber that computes for 0.3 s, then computes
    -- itself; the cancel comes while the other fiber runs. In a child: a
    -- lost cancel never returns.
    local out, rc = child([[
      local fio = require "fiberio"
      local f = fio.parallel(function()
        local fio = require "fiberio"
        fio.async(function() local t = fio.now() while fio.now() - t < 0.3 do end end)
        fio.yield()
        while true do end
      end)
      fio.sleep(0.1)
      print(fio.timeout(3, function() return f:cancel() end))
    ]], { unbuffered = true, timeout = helper.bound(20) })
    assert.equal(0, rc, out)
    assert.equal("nil\t" .. tostring(fio.Canceled) .. "\n", out)
  end)

  it("is not lost when it comes just as a computing task starts", function()
    -- The cancel may reach the worker before the task's fiber runs, or while
    -- the worker switches to it: a window of microseconds, hit in about one
    -- process in five here with 300 tries (this spec can miss the bug; the
    -- one above cannot). A lost cancel never returns (the child's
    -- fio.timeout reports it).
    for run = 1, 5 do
      local out, rc = child([[
        local fio = require "fiberio"
        fio.parallel(function() end):await() -- a worker up
        for i = 1, 300 do
          local f = fio.parallel(function() while true do end end)
          fio.sleep(1e-6 * (1 + i % 50)) -- 1 to 50 microseconds in
          local r = table.pack(fio.timeout(2, function() return f:cancel() end))
          if r[1] ~= nil or not rawequal(r[2], fio.Canceled) then
            print("cancel " .. i .. " gave " .. tostring(r[1]) .. ", " .. tostring(r[2]))
            os.exit(1, true) -- closing the state stops the task
          end
        end
        print("END")
      ]], { unbuffered = true, timeout = helper.bound(30) })
      assert.equal(0, rc, "run " .. run .. ": " .. out)
      assert.equal("END\n", out, "run " .. run)
    end
  end)

  it("of a task that finished gives its results", function()
    local f = fio.parallel(function() return "done", 2 end)
    assert.same(pack("done", 2), pack(f:await()))
    assert.same(pack("done", 2), pack(f:cancel()))
  end)

  it("gives the results of a task that caught Canceled and returned anyway", function()
    local f = fio.parallel(function(p)
      local fio = require "fiberio"
      io.open(p, "w"):close()
      local ok, err = pcall(fio.sleep, 10)
      return "cleaned up", ok, rawequal(err, fio.Canceled)
    end, dir .. "/started")
    while not exists(dir .. "/started") do fio.sleep(0.002) end
    fio.sleep(0.01)
    assert.same(pack("cleaned up", false, true), pack(f:cancel()))
  end)

  it("of a task not started yet means it never runs (one worker, busy)", function()
    local out, rc = child(([[
      local fio = require "fiberio"
      fio.config { threads = 1 }
      local dir = %q
      -- the only worker computes without ever suspending: nothing else starts
      local busy = fio.parallel(function(p)
        io.open(p, "w"):close()
        while true do end
      end, dir .. "/busy")
      local deadline = fio.now() + 10
      while not fio.stat(dir .. "/busy") do
        assert(fio.now() < deadline, "the busy task did not start")
        fio.sleep(0.002)
      end
      local write = function(p, s) local f = io.open(p, "w") f:write(s) f:close() return s end
      local queued = fio.parallel(write, dir .. "/side", "queued task ran")
      fio.sleep(0.05)
      print("queued done before cancel:", queued:done())
      print("cancel queued:", queued:cancel())
      print("cancel busy:", busy:cancel())
      -- the worker is free again and runs what comes next
      print("next:", fio.parallel(write, dir .. "/next", "next ran"):await())
      fio.sleep(0.05)
      print("END")
    ]]):format(dir), { unbuffered = true, timeout = helper.bound(20) })
    assert.equal(0, rc, out)
    assert.matches("queued done before cancel:\tfalse\n", out, 1, true)
    assert.matches("cancel queued:\tnil\t" .. tostring(fio.Canceled) .. "\n", out, 1, true)
    assert.matches("cancel busy:\tnil\t" .. tostring(fio.Canceled) .. "\n", out, 1, true)
    assert.matches("next:\tnext ran\n", out, 1, true)
    assert.matches("END", out, 1, true)
    assert.equal("next ran", slurp(dir .. "/next"))
    assert.is_false(exists(dir .. "/side"), "the canceled task ran")
  end)

  it("canceled before its own fiber first ran: the task is never queued and never runs", function()
    -- The future's fiber submits the task when it first runs; canceled
    -- before that, the fiber never runs, and the task (its copies of the
    -- function and arguments) is freed with it: `make check`'s leak check
    -- fails the run if it is not.
    local results = fio.run(function()
      local r = {}
      for i = 1, 100 do
        local f = fio.parallel(function(p)
          local fh = io.open(p, "w") fh:close()
        end, dir .. "/ran" .. i)
        r[i] = pack(f:cancel())
      end
      return r
    end)
    for i = 1, 100 do assert.same(pack(nil, fio.Canceled), results[i]) end
    -- a task that slipped through would have run by now
    assert.equal("done", fio.parallel(function() return "done" end):await())
    fio.sleep(0.05)
    for i = 1, 100 do assert.is_false(exists(dir .. "/ran" .. i), "task " .. i .. " ran") end
    helper.fullgc()
  end)

  it("reaches a task computing inside coroutine.resume: resume returns false, Canceled there", function()
    local out, rc = child([[
      local fio = require "fiberio"
      local f = fio.parallel(function()
        local fio = require "fiberio"
        local co = coroutine.create(function() while true do end end)
        local ok, err = coroutine.resume(co)
        return "resume returned", ok, rawequal(err, fio.Canceled), coroutine.status(co)
      end)
      fio.sleep(0.05)
      print("cancel:", fio.timeout(2, function() return f:cancel() end))
    ]], { unbuffered = true, timeout = helper.bound(10) })
    assert.equal(0, rc, out)
    assert.equal("cancel:\tresume returned\tfalse\ttrue\tdead\n", out)
  end)

  it("coroutines in a task behave as Lua's: results, errors with their position, <close> on error", function()
    local function body()
      local log = {}
      local gen = coroutine.wrap(function(a) local b = coroutine.yield(a + 1) return b * 2 end)
      log[#log + 1] = gen(1)
      log[#log + 1] = gen(5)
      log[#log + 1] = select(2, pcall(gen))
      local _, e = pcall(coroutine.wrap(function()
        local guard <close> = setmetatable({}, { __close = function() log[#log + 1] = "closed" end })
        error("boom")
      end))
      log[#log + 1] = e
      log[#log + 1] = select(2, pcall(coroutine.wrap(function() error({ "t" }) end)))[1]
      local co = coroutine.create(function(x) coroutine.yield(x) error("late", 0) end)
      log[#log + 1] = table.concat({ tostring(coroutine.resume(co, 7)), tostring(select(2, coroutine.resume(co, 7))) }, ",")
      log[#log + 1] = table.concat({ tostring(coroutine.resume(co)) }, ",")
      log[#log + 1] = tostring(select(2, coroutine.resume(co)))
      log[#log + 1] = select(2, pcall(coroutine.resume, 42))
      log[#log + 1] = select(2, pcall(function() coroutine.resume(nil) end))
      log[#log + 1] = select(2, pcall(function() return coroutine.wrap(5) end))
      local wrapped = coroutine.wrap(function() error("inner") end)
      log[#log + 1] = select(2, pcall(function() return wrapped() end))
      return table.concat(log, " | ")
    end
    local here = body()
    local there = fio.parallel(body):await()
    assert.equal(here, there)
    assert.matches("closed | [^|]*: boom", there)
  end)

  it("reaches a task computing inside a coroutine it resumed", function()
    -- In a child: if the cancel never lands, the worker never stops.
    local out, rc = child([[
      local fio = require "fiberio"
      local f = fio.parallel(function()
        local spin = coroutine.wrap(function() while true do end end)
        spin()
      end)
      fio.sleep(0.05)
      print("cancel:", fio.timeout(2, function() return f:cancel() end))
      print("END")
    ]], { unbuffered = true, timeout = helper.bound(10) })
    assert.equal(0, rc, out)
    assert.matches("cancel:\tnil\t" .. tostring(fio.Canceled) .. "\n", out, 1, true)
    assert.matches("END", out, 1, true)
  end)
end)

describe("when the main state closes with parallel tasks still running", function()
  -- (a main chunk that returns runs them to their end: these close the state)
  local function closed(n)
    return ("fiberio: %d fiber%s had not finished when the Lua state was closed: canceled\n"):format(n, n == 1 and "" or "s")
  end
  it("workers are canceled and joined, and the process exits promptly", function()
    local dir = tmpdir()
    local out, rc, dt = child(([[
      local fio = require "fiberio"
      fio.config { threads = 2 }
      local dir = %q
      local function closer()
        -- each task notes, as its state unwinds, that it saw Canceled
        return function(d, name)
          local fio = require "fiberio"
          local c <close> = setmetatable({}, { __close = function(_, err)
            local f = io.open(d .. "/" .. name, "w")
            f:write(rawequal(err, fio.Canceled) and "canceled" or tostring(err))
            f:close()
          end })
          if name == "sleeper" then fio.sleep(10)
          elseif name == "reader" then local r, w = fio.pipe() r:read("a")
          end
        end
      end
      KEEP = {
        fio.parallel(closer(), dir, "sleeper"),
        fio.parallel(closer(), dir, "reader"),
      }
      fio.sleep(0.1)
      print("END")
      os.exit(0, true) -- the state closes with the tasks running
    ]]):format(dir), { unbuffered = true, timeout = helper.bound(10) })
    local sleeper, reader = slurp(dir .. "/sleeper"), slurp(dir .. "/reader")
    rmtree(dir)
    assert.equal(0, rc, out)
    assert.equal("END\n" .. closed(2), out)
    assert.is_true(dt < helper.bound(2), "the child took " .. dt .. " s")
    assert.equal("canceled", sleeper)
    assert.equal("canceled", reader)
  end)

  it("a task still queued never runs", function()
    local dir = tmpdir()
    local out, rc, dt = child(([[
      local fio = require "fiberio"
      fio.config { threads = 1 }
      local dir = %q
      -- the only worker computes without suspending: the next task stays queued
      fio.parallel(function(d) io.open(d .. "/busy", "w"):close() while true do end end, dir)
      while not fio.stat(dir .. "/busy") do fio.sleep(0.002) end
      fio.parallel(function(d) io.open(d .. "/queued", "w"):close() end, dir)
      fio.sleep(0.05)
      print("END")
      os.exit(0, true) -- the state closes with the tasks running
    ]]):format(dir), { unbuffered = true, timeout = helper.bound(10) })
    local busy, queued = exists(dir .. "/busy"), exists(dir .. "/queued")
    rmtree(dir)
    assert.equal(0, rc, out)
    assert.equal("END\n" .. closed(2), out)
    assert.is_true(dt < helper.bound(2), "the child took " .. dt .. " s")
    assert.is_true(busy)
    assert.is_false(queued, "the queued task ran at shutdown")
  end)

  it("a task computing in a loop that never suspends is stopped too", function()
    local out, rc, dt = child([[
      local fio = require "fiberio"
      fio.parallel(function() while true do end end)
      fio.parallel(function() local x = 0 while true do x = x + 1 end end)
      fio.sleep(0.1)
      print("END")
      os.exit(0, true) -- the state closes with the tasks running
    ]], { unbuffered = true, timeout = helper.bound(10) })
    assert.equal(0, rc, out)
    assert.equal("END\n" .. closed(2), out)
    assert.is_true(dt < helper.bound(2), "the child took " .. dt .. " s")
  end)

  it("a task computing inside a coroutine it resumed is stopped too", function()
    local out, rc, dt = child([[
      local fio = require "fiberio"
      fio.parallel(function() coroutine.wrap(function() while true do end end)() end)
      fio.sleep(0.1)
      print("END")
      os.exit(0, true) -- the state closes with the tasks running
    ]], { unbuffered = true, timeout = helper.bound(10) })
    assert.equal(0, rc, out)
    assert.equal("END\n" .. closed(1), out)
    assert.is_true(dt < helper.bound(2), "the child took " .. dt .. " s")
  end)

  it("a task whose own fiber computes forever is stopped too", function()
    local out, rc, dt = child([[
      local fio = require "fiberio"
      fio.parallel(function()
        local fio = require "fiberio"
        fio.async(function() while true do end end):await()
      end)
      fio.sleep(0.1)
      print("END")
      os.exit(0, true) -- the state closes with the tasks running
    ]], { unbuffered = true, timeout = helper.bound(10) })
    assert.equal(0, rc, out)
    assert.equal("END\n" .. closed(1), out)
    assert.is_true(dt < helper.bound(2), "the child took " .. dt .. " s")
  end)

  it("a script whose tasks all finished exits at once", function()
    local out, rc, dt = child([[
      local fio = require "fiberio"
      local s = 0
      for i = 1, 100 do s = s + fio.parallel(function(i) return i end, i):await() end
      print(s)
    ]], { unbuffered = true, timeout = helper.bound(10) })
    assert.equal(0, rc, out)
    assert.equal("5050\n", out)
    assert.is_true(dt < helper.bound(2), "the child took " .. dt .. " s")
  end)

  it("a worker waits for a task that cleans up after its cancel, without spinning", function()
    -- tools/host.c closes the state (lua_close) and prints the CPU time and
    -- the wall time the close took: the task's 0.5 s of cleanup is waited
    -- for, asleep. (A worker that polled its loop without sleeping used a
    -- whole CPU for that time.)
    local why = helper.host_missing()
    if why then pending(why) return end
    local out = helper.host([[
      local fio = require "fiberio"
      KEEP = fio.parallel(function()
        local fio = require "fiberio"
        pcall(fio.sleep, 100) -- canceled when the state closes
        fio.shield(function() fio.sleep(0.5) end) -- cleanup
      end)
      fio.sleep(0.1)
      error("the state closes with the task in flight", 0)
    ]], "1 cpu")
    local cpu, wall = out:match("close cpu ([%d.]+) wall ([%d.]+)")
    assert(cpu, out)
    cpu, wall = tonumber(cpu), tonumber(wall)
    assert.is_true(wall >= 0.45, out) -- the cleanup was waited for
    assert.is_true(cpu < 0.25, out)
  end)
end)

describe("parallel tasks spread over the workers", function()
  -- Task "waiter" spins, never suspending, until the file task "writer"
  -- writes appears (or 1 s passes); it can see it only if the two run at
  -- the same time on two workers.
  local SPREAD = [[
    local fio = require "fiberio"
    fio.config { threads = %d }
    local flag = %q
    local waiter = fio.parallel(function(flag)
      local fio = require "fiberio"
      local deadline = fio.now() + 1
      while fio.now() < deadline do
        local f = io.open(flag)
        if f then f:close() return "saw the writer" end
      end
      return "alone"
    end, flag)
    local writer = fio.parallel(function(flag) io.open(flag, "w"):close() return "wrote" end, flag)
    print(waiter:await(), writer:await())
  ]]

  it("two tasks that never suspend run at the same time with threads = 2", function()
    local dir = tmpdir()
    local out, rc = child(SPREAD:format(2, dir .. "/flag"), { unbuffered = true, timeout = helper.bound(10) })
    rmtree(dir)
    assert.equal(0, rc, out)
    assert.equal("saw the writer\twrote\n", out)
  end)

  it("fio.config{threads = 1} runs them on one worker, one after the other", function()
    local dir = tmpdir()
    local out, rc = child(SPREAD:format(1, dir .. "/flag"), { unbuffered = true, timeout = helper.bound(10) })
    rmtree(dir)
    assert.equal(0, rc, out)
    assert.equal("alone\twrote\n", out)
  end)

  it("two CPU-bound tasks compute at the same time, in well under twice one's time on 2 cores", function()
    local n = ncpu()
    if n < 2 then pending("needs 2 CPUs; this process may use " .. n) return end
    if os.getenv("FIBERIO_SANITIZE") == "valgrind" then
      pending("valgrind runs one thread at a time: no two tasks can compute at once under it")
      return
    end
    -- computes, never suspending, and says when it started and ended (one
    -- monotonic clock for every thread)
    local function spin(n)
      local now = require("fiberio").now
      local t0 = now()
      local x = 0
      for i = 1, n do x = x + i % 7 end
      return t0, now(), x
    end
    -- size the work so one task takes about 0.3 s in a worker
    local t = helper.timed(function() fio.parallel(spin, 2000000):await() end)
    local work = math.max(2000000, math.floor(2000000 * 0.3 / t))
    -- Two checks. Both tasks were computing at the same time: on one worker
    -- the second would start only when the first ended (overlap <= 0); this
    -- holds whatever else the machine does. And the pair took well under
    -- twice one's time: one after the other takes 2x, two free CPUs about
    -- 1x; 1.5x is the line. Other jobs on a shared machine can take a CPU
    -- away: a try during which the rest of the machine kept more than a
    -- quarter of a CPU busy does not count for the time check.
    local tries, clean = {}, 0
    for try = 1, 8 do
      local b0, t0, cpus = machine_ticks()
      local c0 = os.clock()
      local one = helper.timed(function() fio.parallel(spin, work):await() end)
      local s1, e1, s2, e2
      local two = helper.timed(function()
        local a, b = fio.parallel(spin, work), fio.parallel(spin, work)
        s1, e1 = a:await()
        s2, e2 = b:await()
      end)
      local overlap = (math.min(e1, e2) - math.max(s1, s2)) / math.min(e1 - s1, e2 - s2)
      assert.is_true(overlap > 0.5, ("the two tasks overlapped for %.2f of their time"):format(overlap))
      if os.getenv("FIBERIO_SANITIZE") == "tsan" then
        -- (under TSan task fibers poll for a cancel every 4096 instructions,
        -- through atomics both workers share: the pair's time says more
        -- about TSan's locks than about the workers)
        pending("the time check does not hold under TSan; the tasks overlapped for "
                .. ("%.2f of their time"):format(overlap))
        return
      end
      local ours = (os.clock() - c0) / (one + two)
      local b1, t1 = machine_ticks()
      local others = b0 and t1 > t0 and cpus * (b1 - b0) / (t1 - t0) - ours or 0
      tries[try] = ("two %.3f s, one %.3f s, other load %.2f CPU"):format(two, one, others)
      if others < 0.25 then
        if two < one * 1.5 then return end
        clean = clean + 1
        if clean == 3 then break end
      end
    end
    if clean == 0 then
      pending("other jobs kept a CPU busy in every try: " .. table.concat(tries, "; "))
    end
    assert.is_true(false, "two tasks never took less than 1.5x one's time: " .. table.concat(tries, "; "))
  end)
end)

describe("workers' rings and wake-ups", function()
  it("on io_uring, a worker's ring shares the caller's io-wq (ATTACH_WQ); on threads, there is no ring", function()
    local flags = fio.parallel(function()
      return require("fiberio")._info().ring_flags
    end):await()
    if fio.backend() == "io_uring" then
      assert.is_truthy(flags:find("attach_wq", 1, true), flags)
      assert.is_nil(fio._info().ring_flags:find("attach_wq", 1, true)) -- the first ring attaches to none
    else
      assert.is_nil(flags)
    end
  end)

  it("an idle worker is woken for a new task; on io_uring by a MSG_RING, and the result comes back the same way", function()
    -- A result posted while the caller is still awake needs no wake: the
    -- task returns when the caller should sleep in its await, and a try in
    -- which the caller was awake all the same (a loaded machine) is tried
    -- again, up to five times.
    local woken, caller_woken
    for _ = 1, 5 do
      fio.parallel(function() end):await() -- a worker up, then idle
      fio.sleep(0.05)                      -- every worker waits in its loop now
      local before = fio._info().msg_ring_wakes
      woken = fio.parallel(function()
        local fio = require "fiberio"
        fio.sleep(0.05)
        return fio._info().msg_ring_wakes
      end):await()
      caller_woken = before and fio._info().msg_ring_wakes > before
      if caller_woken or not before then break end
    end
    if fio.backend() == "io_uring" then
      local new, release = helper.kernel_at_least(6, 13)
      if not new then
        pending("a MSG_RING without a ring of one's own needs Linux 6.13 (wakes use the eventfd); this kernel is " .. release)
        return
      end
      assert.is_true(woken >= 1, "the worker's ring got no MSG_RING")
      assert.is_true(caller_woken, "the caller's ring got no MSG_RING")
    else
      assert.is_nil(woken)
    end
  end)

  it("fibers a finished task left behind go on while their worker is idle", function()
    local dir = tmpdir()
    local flag = dir .. "/flag"
    assert.equal("returned", fio.parallel(function(flag)
      local fio = require "fiberio"
      fio.async(function()
        fio.sleep(0.05)
        assert(fio.writefile(flag, "late"))
      end)
      return "returned"
    end, flag):await())
    local deadline = fio.now() + 2
    while fio.readfile(flag) ~= "late" and fio.now() < deadline do fio.sleep(0.01) end
    assert.equal("late", fio.readfile(flag))
    fio.unlink(flag)
    fio.rmdir(dir)
  end)
end)

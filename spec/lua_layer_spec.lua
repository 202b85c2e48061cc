-- The Lua layer over the C core (issue 13, "one layered core"): fio.errno,
-- the names of the errno numbers a failure returns third; misuse of the
-- layer's functions raising at the caller's line; and the split of
-- lua/fiberio/ into init, sync and fs keeping every function on the table
-- require "fiberio" returns.
local helper = require "helper"
local fio = helper.fio
if helper.backend_gate(describe, it, pending) then return end

describe("fio.errno", function()
  local dir
  before_each(function() dir = helper.mktempdir("layer") end)
  after_each(function() helper.rmtree(dir) end)

  it("holds the number the kernel returns for each failure", function()
    fio.run(function()
      assert.equal(fio.errno.ENOENT, select(3, fio.open(dir .. "/missing")))
      assert.equal(fio.errno.EEXIST, select(3, fio.mkdir(dir)))
      assert.equal(fio.errno.EISDIR, select(3, fio.open(dir, "w")))
      assert(fio.writefile(dir .. "/f", "x"))
      assert.equal(fio.errno.ENOTEMPTY, select(3, fio.rmdir(dir)))
      assert.equal(fio.errno.ENOTDIR, select(3, fio.readdir(dir .. "/f")))
    end)
  end)

  it("agrees with the errno Lua's own io returns", function()
    assert.equal(fio.errno.ENOENT, select(3, io.open(dir .. "/missing")))
    assert.equal(fio.errno.EISDIR, select(3, io.open(dir, "w")))
  end)

  it("names every Linux errno from 1 to 133 (41 and 58 are unused), and the aliases", function()
    local names = {}
    for name, n in pairs(fio.errno) do
      assert.equal("integer", math.type(n), name)
      assert.matches("^E[A-Z0-9]+$", name)
      names[n] = name
    end
    for n = 1, 133 do
      if n ~= 41 and n ~= 58 then assert.is_string(names[n], "no name for errno " .. n) end
    end
    assert.equal(fio.errno.EAGAIN, fio.errno.EWOULDBLOCK)
    assert.equal(fio.errno.EDEADLK, fio.errno.EDEADLOCK)
    assert.equal(fio.errno.EOPNOTSUPP, fio.errno.ENOTSUP)
    local errno = fio.errno -- (made on first use, and then fiberio.core's too)
    assert.equal(errno, require("fiberio.core").errno)
  end)

  it("is there in a fio.parallel worker's state too", function()
    local f = fio.parallel(function() return require("fiberio").errno.EEXIST end)
    assert.equal(fio.errno.EEXIST, f:await())
  end)
end)

describe("misuse of the Lua layer", function()
  -- fn, a function on one line, raises an error whose message names that
  -- line of this file (not a line of lua/fiberio/) and says what.
  local function raises_at_its_line(what, fn)
    local ok, err = pcall(fn)
    assert.is_false(ok, "no error for " .. what)
    err = tostring(err)
    local at = "lua_layer_spec.lua:" .. debug.getinfo(fn, "S").linedefined .. ": "
    assert.matches(at, err, 1, true)
    assert.not_matches("fiberio/", err, 1, true)
    assert.matches(what, err, 1, true)
  end

  it("names the caller's line: constructors (init, sync, fs)", function()
    raises_at_its_line("bad argument #1 to 'semaphore'", function() fio.semaphore(-1) end)
    raises_at_its_line("bad argument #1 to 'queue'", function() fio.queue("x") end)
    raises_at_its_line("bad argument #1 to 'mkdirp' (string expected, got nil)", function() fio.mkdirp(nil) end)
    raises_at_its_line("bad argument #2 to 'mkdirp'", function() fio.mkdirp("/tmp/x", "rwx") end)
    raises_at_its_line("bad argument #1 to 'walk' (string expected, got number)", function() fio.walk(1) end)
    raises_at_its_line("bad argument #1 to 'group'", function() fio.group { limit = -1 } end)
    raises_at_its_line("bad argument #1 to 'timeout'", function() fio.timeout(nil, print) end)
  end)

  it("names the caller's line: the shared checks of functions, options and timeouts", function()
    raises_at_its_line("bad argument #2 to 'timeout' (function expected, got no value)", function() fio.timeout(1) end)
    raises_at_its_line("bad argument #1 to 'async' (function expected", function() fio.group():async({}) end)
    raises_at_its_line("bad argument #2 to 'walk' (unknown option 'depth')", function() fio.walk(".", { depth = 1 }) end)
    raises_at_its_line("bad argument #2 to 'walk' (table expected, got string)", function() fio.walk(".", "x") end)
    raises_at_its_line("bad argument #1 to 'acquire' (number expected, got string)", function() fio.semaphore():acquire("1") end)
    raises_at_its_line("bad argument #1 to 'lock' (timeout is NaN)", function() fio.mutex():lock(0 / 0) end)
    raises_at_its_line("bad argument #1 to 'get' (number expected", function() fio.queue():get({}) end)
    raises_at_its_line("bad argument #2 to 'put' (timeout is NaN)", function() fio.queue():put(1, 0 / 0) end)
    raises_at_its_line("bad argument #2 to 'wait' (number expected", function() fio.condition():wait(fio.mutex(), "1") end)
  end)

  it("names the caller's line: the methods of mutex, condition and queue", function()
    local m = fio.mutex()
    raises_at_its_line("unlock of a mutex this fiber does not hold", function() m:unlock() end)
    assert.is_true(m:lock())
    raises_at_its_line("mutex already locked by this fiber", function() m:lock() end)
    assert.is_true(m:unlock())
    raises_at_its_line("bad argument #1 to 'wait' (mutex expected)", function() fio.condition():wait({}) end)
    local q = fio.queue()
    raises_at_its_line("bad argument #1 to 'put' (nil is not an item)", function() q:put(nil) end)
    q:close()
    raises_at_its_line("put on a closed queue", function() q:put(1) end)
  end)

  it("a walk that cannot read its root raises at the loop's line", function()
    local missing = helper.mktempdir("layer")
    helper.rmtree(missing)
    raises_at_its_line(missing .. ": No such file or directory", function() for _ in fio.walk(missing) do end end)
  end)
end)

describe("after the split of lua/fiberio/ into init, sync and fs", function()
  local dir
  before_each(function() dir = helper.mktempdir("layer") end)
  after_each(function() helper.rmtree(dir) end)

  it("every function is still on the table require 'fiberio' returns", function()
    assert.equal(fio, require "fiberio")
    for _, name in ipairs { "async", "await", "cancel", "select", "run", "shield", "group", "timeout",
                            "semaphore", "mutex", "condition", "queue", "mkdirp", "scandir", "walk" } do
      assert.is_function(fio[name], name)
    end
  end)

  it("require compiles no layer and makes no fio.errno until one is used (start-up)", function()
    local out = helper.child([[
      local fio = require "fiberio"
      local function loaded()
        local t = {}
        for _, m in ipairs { "group", "sync", "fs", "process", "watch", "socket" } do
          if package.loaded["fiberio." .. m] then t[#t + 1] = m end
        end
        if rawget(fio, "errno") then t[#t + 1] = "errno" end
        return table.concat(t, " ")
      end
      print(loaded())
      local _ = fio.group, fio.errno
      print(loaded())
      local _ = fio.walk
      print(loaded())
    ]])
    assert.equal("\ngroup errno\ngroup fs errno\n", out)
  end)

  it("the coordination and fs functions work through it", function()
    fio.run(function()
      assert.same({ "a", 2 }, { fio.semaphore(1):with(function() return "a", 2 end) })
      local m, c, q = fio.mutex(), fio.condition(), fio.queue(1)
      local f = fio.async(function() return m:with(function() return c:wait(m, 5) end) end)
      fio.yield()
      m:with(c.signal, c)
      assert.is_true(f:await())
      assert.is_true(q:put("x"))
      assert.equal("x", q:get())
      assert.is_true(fio.mkdirp(dir .. "/a/b/c"))
      assert.same({ "b", "directory" }, { fio.scandir(dir .. "/a")() })
      local n = 0
      for _ in fio.walk(dir) do n = n + 1 end
      assert.equal(3, n)
    end)
  end)

  it("each function has one name in tracebacks: fiberio.NAME, never fiberio.sync or fiberio.fs", function()
    -- A traceback names a function by the first table of package.loaded
    -- that holds it (a walk in no fixed order): only fiberio may hold them.
    local names = { "semaphore", "mutex", "condition", "queue", "mkdirp", "scandir", "walk", "timeout", "group" }
    for modname, t in next, package.loaded do
      if modname ~= "fiberio" and type(t) == "table" then
        for k, v in next, t do
          for _, name in ipairs(names) do
            assert(v ~= fio[name], ("package.loaded[%q].%s is fio.%s"):format(modname, tostring(k), name))
          end
        end
      end
    end
    for _, name in ipairs { "semaphore", "queue", "mkdirp", "walk", "timeout", "group" } do -- (they raise)
      local _, tb = xpcall(fio[name], debug.traceback, -1)
      assert.matches("function 'fiberio." .. name .. "'", tb, 1, true)
    end
  end)
end)

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
    assert.equal(fio.errno, require("fiberio.core").errno)
  end)

  it("is there in a fio.parallel worker's state too", function()
    local f = fio.parallel(function() return require("fiberio").errno.EEXIST end)
    assert.equal(fio.errno.EEXIST, f:await())
  end)
end)

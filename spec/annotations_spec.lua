-- The editor types (library/fiberio.lua, issue 19) name exactly what the
-- module exports: every function and field of `fio`, and every method of
-- each class, both ways. The reference (docs/REFERENCE.md) is generated
-- from the same file and must be up to date.
local helper = require "helper"
local fio = helper.fio

local LIBRARY = "library/fiberio.lua"

-- What the annotation file declares: fio's functions and fields, and each
-- class's methods ({["fiberio.File"] = {read = true, ...}}).
local function declared()
  local funcs, fields, methods = {}, {}, {}
  local class_of = {} -- local variable name -> class name
  local pending_class, in_fio_class = nil, false
  for line in io.lines(LIBRARY) do
    local class = line:match("^%-%-%-@class ([%w_.]+)")
    if class then
      pending_class = class
      in_fio_class = class == "fiberio"
    end
    local var = line:match("^local (%w+) = {}")
    if var and pending_class then class_of[var] = pending_class end
    if in_fio_class then
      local field = line:match("^%-%-%-@field ([%w_]+)")
      if field then fields[field] = true end
    end
    if not line:match("^%-%-%-") then in_fio_class = false end
    local fname = line:match("^function fio%.([%w_]+)%(")
    if fname then funcs[fname] = true end
    local cvar, mname = line:match("^function (%w+):([%w_]+)%(")
    if cvar then
      local cname = assert(class_of[cvar], "no class for " .. cvar)
      methods[cname] = methods[cname] or {}
      methods[cname][mname] = true
    end
  end
  return funcs, fields, methods
end

-- The methods an object's metatable gives (its __index table), less the
-- metamethods.
local function methods_of(obj)
  local t = {}
  local idx = getmetatable(obj).__index
  assert(type(idx) == "table")
  for k, v in pairs(idx) do
    if type(v) == "function" and k:sub(1, 2) ~= "__" then t[k] = true end
  end
  return t
end

local function keys(t)
  local list = {}
  for k in pairs(t) do list[#list + 1] = k end
  table.sort(list)
  return list
end

describe("library/fiberio.lua", function()
  it("annotates every function and field fio exports, and nothing else", function()
    local funcs, fields = declared()
    for name in pairs(funcs) do
      assert.equal("function", type(fio[name]), "annotated but not exported: fio." .. name)
    end
    for name in pairs(fields) do
      assert.is_not_nil(fio[name], "annotated but not exported: fio." .. name)
    end
    -- (each annotated name was looked up above: every layer is loaded now)
    local missing = {}
    for name, v in pairs(fio) do
      local public = name:sub(1, 1) ~= "_" or name == "_VERSION"
      if public and not (type(v) == "function" and funcs[name] or fields[name]) then
        missing[#missing + 1] = name
      end
    end
    table.sort(missing)
    assert.same({}, missing)
  end)

  it("annotates every method of each class, and nothing else", function()
    local _, _, declared_methods = declared()
    local dir = helper.mktempdir("annot")
    local actual = {}
    fio.run(function()
      local f = assert(fio.open(dir .. "/f", "w"))
      actual["fiberio.File"] = methods_of(f)
      f:close()
      actual["fiberio.Future"] = methods_of(fio.async(function() end))
      actual["fiberio.Group"] = methods_of(fio.group())
      actual["fiberio.Semaphore"] = methods_of(fio.semaphore(1))
      actual["fiberio.Mutex"] = methods_of(fio.mutex())
      actual["fiberio.Condition"] = methods_of(fio.condition())
      actual["fiberio.Queue"] = methods_of(fio.queue(1))
      local s = fio.signal("USR2")
      actual["fiberio.Signal"] = methods_of(s)
      s:close()
      local p = assert(fio.spawn { "true" })
      actual["fiberio.Process"] = methods_of(p)
      p:wait()
      p:close()
      local w = assert(fio.watch(dir))
      actual["fiberio.Watcher"] = methods_of(w)
      w:close()
      local a, b = fio.socketpair()
      actual["fiberio.Socket"] = methods_of(a)
      a:close(); b:close()
      local srv = assert(fio.listen("127.0.0.1", 0))
      actual["fiberio.Server"] = methods_of(srv)
      srv:close()
    end)
    helper.rmtree(dir)
    -- (a File and a Socket have a Stream's methods, declared once there)
    local stream = declared_methods["fiberio.Stream"]
    for _, class in ipairs { "fiberio.File", "fiberio.Socket" } do
      for m in pairs(stream) do declared_methods[class][m] = true end
    end
    for class, set in pairs(actual) do
      assert.same(keys(set), keys(declared_methods[class] or {}), class)
    end
    for class in pairs(declared_methods) do
      assert.is_true(actual[class] ~= nil or class == "fiberio.Stream", "annotated class not checked: " .. class)
    end
  end)

  it("docs/REFERENCE.md is what tools/gendoc.lua makes of it", function()
    local out = helper.sh("lua5.4 tools/gendoc.lua " .. LIBRARY)
    assert.equal(helper.get("docs/REFERENCE.md"), out)
  end)
end)

-- Differential: a File must give io's results (DESIGN.md section 1, "Files —
-- compatible with Lua's io handles"). With fixed seeds, hundreds of random
-- steps — read (formats "l" "L" "n" "a" and counts, 0 included, several at
-- once), write (strings with newlines, numerals, long runs, numbers), seek
-- (set, cur, end with offsets), lines (a few calls of a fresh iterator),
-- flush, reads and lines with an invalid format among valid ones, and
-- appends by a second handle (reads after them, EOF included, must see the
-- new bytes without a seek) — run against an io handle and a fiberio
-- handle opened the same way
-- ("r+", "w+", "a+") on two copies of the same starting file. Every step's
-- results must be equal (values, their number, integer or float, and error
-- messages), and at the end both files must hold the same bytes; then
-- every method of the closed handles gives the same results.
--
-- A mismatch names the seed, the mode, the step and the steps before it.
-- FIBERIO_DIFF_TRACE=1 prints every step as it runs.
local helper = require "helper"
local fio = helper.fio
local pack = helper.pack

local SEEDS = { 1, 2, 3, 42, 1234, 99991 }
local MODES = { "r+", "w+", "a+" }
local STEPS = 400
local TRACE = os.getenv("FIBERIO_DIFF_TRACE") == "1"

-- Fixtures are made and read with io and os, not with the code under test.
local put, get = helper.put, helper.get

-- --- random steps ------------------------------------------------------------

local function pick(t) return t[math.random(#t)] end

local WORDS = { "alpha", "beta", "gamma", " ", "  ", "\t", "\n", "\n\n", "\r\n", "-", "+", ".", "e",
  "0x", "x", "\0", "\255", "caf\xe9", "nan", "inf", "1e", "--1", ",5" }

-- A string to write or to start the file with.
local function rand_string()
  local k = math.random(16)
  if k == 1 then return "" end
  if k == 2 then return "\n" end
  if k == 3 then return tostring(math.random(-100000, 100000)) .. pick { " ", "\n", "", "x" } end
  if k == 4 then return ("%.3f"):format((math.random() - 0.5) * 1e4) .. pick { " ", "\n" } end
  if k == 5 then return ("0x%X"):format(math.random(0, 1 << 20)) .. pick { " ", "\n", "p3 " } end
  if k == 6 then return ("%de%d "):format(math.random(-99, 99), math.random(-20, 20)) end
  if k == 7 then return pick { "x", "\n", "7" }:rep(math.random(1000, 140000)) end
  if k == 8 then return ("1"):rep(math.random(195, 205)) .. pick { " ", "\n", "" } end
  if k == 9 then
    local t = {}
    for i = 1, math.random(1, 300) do t[i] = string.char(math.random(0, 255)) end
    return table.concat(t)
  end
  local t = {}
  for i = 1, math.random(1, 40) do t[i] = pick(WORDS) end
  return table.concat(t)
end

local function rand_number()
  local k = math.random(8)
  if k == 1 then return math.random(-1000, 1000) end
  if k == 2 then return (math.random() - 0.5) * 10 ^ math.random(-5, 20) end
  if k == 3 then return math.random(0, 1 << 40) + 0.0 end
  if k == 4 then return pick { 0, -0.0, 1 / 0, -1 / 0, math.mininteger, math.maxinteger, 2 ^ 53, 0.1 } end
  return math.random(0, 99)
end

local COUNTS = { 0, 0, 1, 1, 2, 3, 5, 7, 10, 64, 100, 1000, 4096, 65535, 65536, 65537, 200000 }

local function rand_format()
  local k = math.random(10)
  if k <= 2 then return "l" end
  if k == 3 then return "L" end
  if k <= 5 then return "n" end
  if k == 6 then return pick { "a", "*l", "*n", "*L" } end
  return pick(COUNTS)
end

local function rand_formats(min)
  local t = {}
  for i = 1, math.random(min, 3) do t[i] = rand_format() end
  return t
end

-- Formats io refuses (its errors are compared), and one it takes ("ln":
-- only the first letter counts). Negative counts are left out: io's read
-- tries to allocate for them ("not enough memory").
local BAD_FORMATS = { {}, "x", "", true, 1.5, "*x", "ln", "0", 2 ^ 63 }

local function with_bad_format(t)
  table.insert(t, math.random(#t + 1), pick(BAD_FORMATS))
  return t
end

-- A step: { name, args..., calls = n for lines }.
local function rand_op()
  local k = math.random(108)
  if k > 104 then
    return { "append", rand_string() }
  elseif k > 102 then
    local s = { "lines", table.unpack(with_bad_format(rand_formats(0))) }
    s.calls = math.random(1, 2)
    return s
  elseif k > 100 then
    return { "read", table.unpack(with_bad_format(rand_formats(0))) }
  elseif k <= 35 then
    return { "read", table.unpack(rand_formats(0)) }
  elseif k <= 60 then
    local args = {}
    for i = 1, math.random(0, 3) do
      args[i] = math.random(4) == 1 and rand_number() or rand_string()
    end
    return { "write", table.unpack(args) }
  elseif k <= 80 then
    local whence = pick { "set", "cur", "end", "set", "cur" }
    local off
    if whence == "set" then
      off = pick { 0, math.random(0, 300), math.random(0, 300000) }
    elseif whence == "cur" then
      off = pick { 0, math.random(-300, 300), math.random(-100000, 100000) }
    else
      off = pick { 0, math.random(-500, 20), math.random(-200000, 0) }
    end
    local j = math.random(6)
    if j == 1 then return { "seek" } end
    if j == 2 then return { "seek", whence } end
    return { "seek", whence, off }
  elseif k <= 92 then
    local s = { "lines", table.unpack(rand_formats(0)) }
    s.calls = math.random(1, 4)
    return s
  end
  return { "flush" }
end

-- C leaves a stream's behaviour undefined when output is followed by input
-- without a flush or a positioning call between them, or input by output
-- without a positioning call (glibc then loses buffered writes, for one), so
-- io is no reference there. The plan puts such a call between them, as a
-- step of its own: a seek that cannot fail (to a position >= 0, or by 0).
local function separates(step)
  if step[1] ~= "seek" then return false end
  local whence, off = step[2], step[3]
  return whence == nil or off == nil or off == 0 or (whence == "set" and off >= 0)
end

local function rand_plan(steps)
  local plan, last = {}, nil -- last: "r" after input, "w" after output
  while #plan < steps do
    local step = rand_op()
    local kind = (step[1] == "read" or step[1] == "lines") and "r" or step[1] == "write" and "w" or nil
    if step[1] == "append" and last == "w" then
      -- the handle's unflushed writes would land after or over the appended
      -- bytes at a moment that depends on its buffer's size
      plan[#plan + 1] = { "flush" }
      last = nil
    end
    if kind and last and kind ~= last then
      if last == "w" and math.random(2) == 1 then
        plan[#plan + 1] = { "flush" }
      else
        plan[#plan + 1] = pick { { "seek" }, { "seek", "cur", 0 }, { "seek", "set", math.random(0, 1000) },
          { "seek", "end", 0 }, { "seek", "set", 0 } }
      end
      last = nil
    end
    plan[#plan + 1] = step
    if kind then
      last = kind
    elseif separates(step) or (step[1] == "flush" and last == "w") then
      last = nil
    end
  end
  return plan
end

-- --- running a step on a handle -----------------------------------------------

-- A value made comparable: numbers keep their subtype, handles become tags.
local function val(v, h)
  if rawequal(v, h) then return "<the file>" end
  if math.type(v) then return ("%s %.17g"):format(math.type(v), v) end
  if type(v) == "table" then
    local t = {}
    for k, x in pairs(v) do t[k] = k == "n" and x or val(x, h) end
    return t
  end
  if type(v) == "userdata" then return "<" .. tostring(io.type(v) or fio.type(v)) .. ">" end
  return v
end

local function norm(r, h)
  local t = { n = r.n }
  for i = 1, r.n do t[i] = val(r[i], h) end
  return t
end

-- The path each handle is open on (for appends by a second handle).
local PATHS = setmetatable({}, { __mode = "k" })

local function run_step(h, step)
  local name = step[1]
  if name == "append" then
    local a = assert(io.open(PATHS[h], "ab"))
    assert(a:write(step[2]))
    assert(a:close())
    return true
  end
  if name == "lines" then
    local it = h:lines(table.unpack(step, 2))
    local r = {}
    for i = 1, step.calls do r[i] = pack(it()) end
    return r
  end
  return h[name](h, table.unpack(step, 2))
end

local function result(h, step)
  local r = pack(pcall(run_step, h, step))
  return norm(r, h)
end

-- --- printing ------------------------------------------------------------------

-- A string as a Lua literal on one line.
local ESC = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ['"'] = '\\"', ["\\"] = "\\\\" }
local function quote(s)
  return '"' .. s:gsub("[%c\"\\\128-\255]", function(c)
    return ESC[c] or ("\\%03d"):format(c:byte())
  end) .. '"'
end

local function show(v, depth)
  depth = depth or 0
  if type(v) == "string" then
    if #v > 60 then
      local c = v:sub(1, 1)
      if v == c:rep(#v) then return ("(%s):rep(%d)"):format(quote(c), #v) end
      return ("%s..(%d bytes)"):format(quote(v:sub(1, 40)), #v)
    end
    return quote(v)
  end
  if math.type(v) == "float" then
    if v ~= v or v == 1 / 0 or v == -1 / 0 then return tostring(v) end
    return ("%.17g"):format(v) .. (math.tointeger(v) and ".0" or "")
  end
  if type(v) ~= "table" or depth > 3 then return tostring(v) end
  local parts = {}
  local n = v.n or #v
  for i = 1, n do parts[i] = show(v[i], depth + 1) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function show_step(step)
  local args = {}
  for i = 2, #step do args[#args + 1] = show(step[i]) end
  local s = step[1] .. "(" .. table.concat(args, ", ") .. ")"
  if step.calls then s = s .. " then the iterator called " .. step.calls .. " times" end
  return s
end

-- luassert's deep comparison (what assert.same uses), without raising.
local deepcompare = require("luassert.util").deepcompare
local function same(a, b)
  return (deepcompare(a, b, true))
end

-- Every method on a closed handle (each raises io's error).
local CLOSED_STEPS = {
  { "read" }, { "read", "a" }, { "write", "x" }, { "lines" }, { "seek" }, { "seek", "set", 0 },
  { "flush" }, { "setvbuf", "no" }, { "close" },
}

-- --- one run -------------------------------------------------------------------

local CONTEXTS = {
  { "the main chunk", function(fn) return fn() end },
  { "a fiber (fio.run)", function(fn) return fio.run(fn) end },
  { "a coroutine.wrap that cannot yield to the loop", function(fn) return coroutine.wrap(fn)() end },
}

local function differential(seed, mode, steps, context)
  local dir = helper.mktempdir("diff")
  local ok, err = pcall(function()
    math.randomseed(seed)
    local parts = {}
    if math.random(5) > 1 then
      for i = 1, math.random(1, 60) do parts[i] = rand_string() end
    end
    local start = table.concat(parts)
    local pio, pfio = dir .. "/io", dir .. "/fio"
    put(pio, start)
    put(pfio, start)
    local plan = rand_plan(steps)
    context[2](function()
      local ih = assert(io.open(pio, mode))
      local fh = assert(fio.open(pfio, mode))
      PATHS[ih], PATHS[fh] = pio, pfio
      local function mismatch(i, what, a, b)
        local lines = {
          ("seed %d, mode %q, in %s: %s differ at step %d of %d"):format(seed, mode, context[1], what, i, steps),
          ("  starting file: %d bytes"):format(#start),
        }
        for j = math.max(1, i - 8), i do
          lines[#lines + 1] = ("  %s step %d: %s"):format(j == i and ">>" or "  ", j, show_step(plan[j]))
        end
        lines[#lines + 1] = "  io:      " .. show(a)
        lines[#lines + 1] = "  fiberio: " .. show(b)
        error(table.concat(lines, "\n"), 0)
      end
      for i, step in ipairs(plan) do
        if TRACE then print(("seed %d %s step %d: %s"):format(seed, mode, i, show_step(step))) end
        local a, b = result(ih, step), result(fh, step)
        if not same(a, b) then mismatch(i, "results", a, b) end
      end
      local a, b = norm(pack(ih:close()), ih), norm(pack(fh:close()), fh)
      if not same(a, b) then mismatch(#plan, "close results", a, b) end
      for _, step in ipairs(CLOSED_STEPS) do
        a, b = result(ih, step), result(fh, step)
        if not same(a, b) then mismatch(#plan, "results on the closed file of " .. show_step(step), a, b) end
      end
      a, b = { tostring(ih), io.type(ih) }, { tostring(fh), fio.type(fh) }
      if not same(a, b) then mismatch(#plan, "the closed file's name and type", a, b) end
      local sa, sb = assert(get(pio)), assert(get(pfio))
      if sa ~= sb then
        local at = 1
        while sa:sub(at, at) == sb:sub(at, at) do at = at + 1 end
        mismatch(#plan, "the files' bytes (first difference at byte " .. at .. ")",
          { #sa, sa:sub(at, at + 40) }, { #sb, sb:sub(at, at + 40) })
      end
    end)
  end)
  helper.rmtree(dir)
  if not ok then error(err, 0) end
end

describe("a fiberio handle against an io handle, step by step", function()
  for si, seed in ipairs(SEEDS) do
    for _, mode in ipairs(MODES) do
      local context = CONTEXTS[(si - 1) % #CONTEXTS + 1]
      it(("gives io's results for %d random steps: seed %d, mode %q, in %s"):format(STEPS, seed, mode, context[1]), function()
        differential(seed, mode, STEPS, context)
      end)
    end
  end

  for _, mode in ipairs(MODES) do
    it(("gives io's results for 3000 random steps: seed 7, mode %q, in a fiber"):format(mode), function()
      differential(7, mode, 3000, CONTEXTS[2])
    end)
  end
end)

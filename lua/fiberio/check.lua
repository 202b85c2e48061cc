-- fiberio.check (internal) — the argument checks the Lua layer's files
-- share. Misuse raises at the caller's line, as the C functions' argument
-- errors (luaL_argerror) do: each check raises at the level of the caller
-- of the fiberio function that called it.
local check = {}

-- Raise "bad argument #n to 'fname' (msg)" at level (default 3: the caller
-- of the function that calls argerror).
local function argerror(n, fname, msg, level)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), level or 3)
end
check.argerror = argerror

-- v must be a function.
function check.func(v, n, fname)
  if type(v) ~= "function" then
    argerror(n, fname, "function expected, got " .. (v == nil and "no value" or type(v)), 4)
  end
end

-- opts must be nil or a table with only the keys of known (a set).
function check.opts(opts, n, fname, known)
  if opts == nil then return end
  if type(opts) ~= "table" then argerror(n, fname, "table expected, got " .. type(opts), 4) end
  for k in pairs(opts) do
    if not known[k] then argerror(n, fname, "unknown option '" .. tostring(k) .. "'", 4) end
  end
end

-- t must be nil or a number of seconds (not NaN).
function check.timeout(t, n, fname)
  if t ~= nil and type(t) ~= "number" then argerror(n, fname, "number expected, got " .. type(t), 4) end
  if t ~= t then argerror(n, fname, "timeout is NaN", 4) end
end

return check

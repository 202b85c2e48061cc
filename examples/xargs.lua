-- xargs.lua — run a command on the items read from stdin, N at a time, as
-- GNU `xargs -P` does.
--
--   lua5.4 examples/xargs.lua [-P N] [-n M] [-0 | -d DELIM] [-r] [CMD [ARG...]]
--
-- Items are read from stdin: separated by blanks and newlines, with '...',
-- "..." and backslash quoting (GNU xargs' default), or by NUL bytes (-0),
-- or by one character (-d, which takes \n and \t). CMD (default echo) runs
-- with ARG... and then at most M items (-n; default: as many as fit in
-- 128 KiB), at most N at once (-P; default 1; 0: no limit), each with this
-- process's stdin closed (/dev/null), stdout and stderr. -r: no run at all
-- when there is no item (GNU runs CMD once).
--
-- How: each command is a fio.spawn'd process (no shell), waited for in a
-- fiber of a fio.group{limit = N}: the next one starts as soon as one ends.
--
-- Exit status, as GNU xargs': 0; 123 if a command exited 1 to 125; 124 if
-- one exited 255 (no more are started); 125 if one was killed by a signal
-- (no more are started); 126 if CMD cannot be run, 127 if it is not found;
-- 1 on bad input (an unmatched quote) or usage.
local fio = require "fiberio"

local PROG = "xargs"
local MAX_CHARS = 128 * 1024

local USAGE, ABOUT = "[-P N] [-n M] [-0 | -d DELIM] [-r] [CMD [ARG...]]",
  "  run CMD (default echo) with the words of stdin as arguments, M at a time,\n" ..
  "  N at once (-P 0: as many as there are CPUs), as GNU xargs does"
local cli = dofile((arg[0]:match("^(.*)/") or ".") .. "/cli.lua")
cli.standard_options(PROG, USAGE, ABOUT, arg, true) -- (options end at CMD)

local usage = cli.usage(PROG, USAGE, nil, 1) -- (GNU xargs: 1 on bad usage)

-- Options.
local procs, maxargs, delim, norun = 1, nil, nil, false
local i = 1
while arg[i] and arg[i]:sub(1, 1) == "-" and #arg[i] > 1 do
  local a = arg[i]
  if a == "--" then i = i + 1 break end
  local opt, val = a:sub(2, 2), a:sub(3)
  if opt == "0" and val == "" then delim = "\0"
  elseif opt == "r" and val == "" then norun = true
  elseif opt == "P" or opt == "n" or opt == "d" then
    if val == "" then
      i = i + 1
      val = arg[i]
      if not val then usage("option -" .. opt .. " needs a value") end
    end
    if opt == "d" then
      delim = val == "\\n" and "\n" or val == "\\t" and "\t" or val
      if #delim ~= 1 then usage("-d takes one character") end
    else
      local n = math.tointeger(tonumber(val))
      if not n or n < (opt == "P" and 0 or 1) then usage("invalid number for -" .. opt .. ": " .. val) end
      if opt == "P" then procs = n else maxargs = n end
    end
  else
    usage("invalid option -- '" .. opt .. "'")
  end
  i = i + 1
end
local cmd = table.move(arg, i, #arg, 1, {})
if #cmd == 0 then cmd = { "echo" } end

-- The items of input.
local function items_of(input)
  local t = {}
  if delim then
    for item in (input .. delim):gmatch("(.-)" .. (delim == "\0" and "%z" or delim:gsub("%p", "%%%0"))) do
      t[#t + 1] = item
    end
    if t[#t] == "" and input:sub(-1) == delim then t[#t] = nil end
    if input == "" then t = {} end
    return t
  end
  local pos, n = 1, #input
  while pos <= n do
    local s = input:find("[^ \t\n]", pos)
    if not s then break end
    local buf, p = {}, s
    while p <= n do
      local c = input:sub(p, p)
      if c == " " or c == "\t" or c == "\n" then break end
      if c == "'" or c == '"' then
        local e = input:find(c, p + 1, true)
        local nl = input:find("\n", p + 1, true)
        if not e or (nl and nl < e) then
          -- (as GNU xargs: what came before still runs)
          return t, "unmatched " .. (c == "'" and "single" or "double")
            .. " quote; by default quotes are special to xargs unless you use the -0 option"
        end
        buf[#buf + 1] = input:sub(p + 1, e - 1)
        p = e + 1
      elseif c == "\\" and p < n then
        buf[#buf + 1] = input:sub(p + 1, p + 1)
        p = p + 2
      else
        local e = input:find("[ \t\n'\"\\]", p) or n + 1
        buf[#buf + 1] = input:sub(p, e - 1)
        p = e
      end
    end
    t[#t + 1] = table.concat(buf)
    pos = p + 1
  end
  return t
end

-- The commands: cmd and ARGs, then items, at most maxargs or MAX_CHARS.
local function batches(items)
  local out, cur, len = {}, nil, 0
  local base = 0
  for _, a in ipairs(cmd) do base = base + #a + 1 end
  for _, item in ipairs(items) do
    if not cur or (maxargs and #cur - #cmd >= maxargs) or (len + #item + 1 > MAX_CHARS and #cur > #cmd) then
      cur = table.move(cmd, 1, #cmd, 1, {})
      out[#out + 1] = cur
      len = base
    end
    cur[#cur + 1] = item
    len = len + #item + 1
  end
  return out
end

local function main()
  local input = fio.stdin:read("a") or ""
  local items, bad = items_of(input)
  local todo = batches(items)
  if #todo == 0 and not norun and not bad then todo = { table.move(cmd, 1, #cmd, 1, {}) } end
  local status, stop = 0, false
  local function finish(code)
    if code > status then status = code end
  end
  local g = fio.group { limit = procs > 0 and procs or nil }
  for _, argv in ipairs(todo) do
    if stop then break end
    g:async(function()
      if stop then return end -- (it waited for its turn meanwhile)
      local p, msg, err = fio.spawn(argv, { stdin = "null" })
      if not p then
        io.stderr:write(PROG, ": ", msg, "\n")
        stop = true
        return finish(err == fio.errno.ENOENT and 127 or 126)
      end
      local how, code, num = p:wait()
      p:close()
      if how == "signal" then
        io.stderr:write(PROG, ": ", argv[1], ": terminated by signal ", num, "\n")
        stop = true
        finish(125)
      elseif code == 255 then
        io.stderr:write(PROG, ": ", argv[1], ": exited with status 255; aborting\n")
        stop = true
        finish(124)
      elseif code ~= 0 then
        finish(123)
      end
    end)
  end
  g:wait()
  if bad then
    io.stderr:write(PROG, ": ", bad, "\n")
    if status == 0 then status = 1 end
  end
  return status
end

local code = fio.run(main)
io.stdout:flush()
os.exit(code)

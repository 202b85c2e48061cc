-- tail.lua — the last lines of a file, and what is appended to it, as
-- `tail -f` prints them.
--
--   lua5.4 examples/tail.lua [-f | -F] [-n N] FILE
--
-- Prints the last N lines of FILE (default 10). With -f, then follows it:
-- each append is printed as it comes; a file cut shorter than what was read
-- prints "tail: FILE: file truncated" on stderr and goes on from its new
-- end. With -F, FILE is followed by name: when it is renamed or deleted
-- and a new FILE appears (log rotation), "tail: 'FILE' has been replaced;
-- following new file" goes to stderr and the new one is followed from its
-- start.
--
-- How: reads are positional (File:pread), so nothing about end of file
-- sticks; between reads the fiber waits on fio.watch (inotify) for the
-- file (and, with -F, its directory), never polling.
--
-- Exit status: 0; 1 if FILE cannot be read; 2 on bad usage. Ctrl-C ends a
-- follow (130, as a shell reports it).
local fio = require "fiberio"

local PROG = "tail"
local CHUNK = 64 * 1024

local USAGE, ABOUT = "[-f | -F] [-n N] FILE",
  "  the last N lines of FILE (default 10); -f: then what is appended, as it\n" ..
  "  comes; -F: the same through a rename or a new FILE (log rotation)"
local cli = dofile((arg[0]:match("^(.*)/") or ".") .. "/cli.lua")
cli.standard_options(PROG, USAGE, ABOUT, arg)

local usage = cli.usage(PROG, USAGE)

local follow, byname, n, file = false, false, 10, nil
local i = 1
while arg[i] do
  local a = arg[i]
  if a == "-f" then follow = true
  elseif a == "-F" then follow, byname = true, true
  elseif a == "-n" or a:match("^%-n%d+$") then
    local v = a == "-n" and arg[i + 1] or a:sub(3)
    if a == "-n" then i = i + 1 end
    n = math.tointeger(tonumber(v or ""))
    if not n or n < 0 then usage("invalid number of lines: " .. tostring(v)) end
  elseif a:sub(1, 1) == "-" and a ~= "-" then usage("invalid option " .. a)
  elseif file then usage("one FILE only")
  else file = a end
  i = i + 1
end
if not file then usage("FILE expected") end

local out = fio.stdout

-- Print from the end of f the last n lines; returns the offset read to.
local function last_lines(f, size)
  if n == 0 then return size end
  local pos, chunks, count = size, {}, 0
  -- (a last line without its newline counts as a line)
  local skip_final, done = true, false
  while pos > 0 and not done do
    local len = pos >= CHUNK and CHUNK or pos
    pos = pos - len
    local s = assert(f:pread(len, pos))
    table.insert(chunks, 1, s)
    local from = #s
    if skip_final and pos + #s == size and s:sub(-1) == "\n" then from = #s - 1 end
    skip_final = false
    for j = from, 1, -1 do
      if s:byte(j) == 10 then
        count = count + 1
        if count == n then
          chunks[1] = s:sub(j + 1)
          done = true
          break
        end
      end
    end
  end
  out:write(table.concat(chunks))
  return size
end

-- Print what f holds from pos on; returns the new pos.
local function copy_from(f, pos)
  while true do
    local s = f:pread(CHUNK, pos)
    if not s or #s == 0 then break end
    out:write(s)
    pos = pos + #s
  end
  out:flush()
  return pos
end

-- pos, or 0 if f was cut shorter than pos (said on stderr, as GNU tail).
local function check_truncated(f, pos)
  local now = f:stat()
  if now and now.size < pos then
    io.stderr:write(PROG, ": ", file, ": file truncated\n")
    return 0
  end
  return pos
end

local function main()
  local f, msg = fio.open(file)
  if not f then
    io.stderr:write(PROG, ": cannot open '", file, "' for reading: ", msg:gsub("^.-: ", ""), "\n")
    return 1
  end
  local st = f:stat()
  local pos = last_lines(f, st.size)
  out:flush()
  if not follow then
    f:close()
    return 0
  end
  local dir = file:match("^(.*)/[^/]*$") or "."
  local base = file:match("[^/]*$")
  if not byname then
    -- -f: the file itself, by its descriptor (a rename changes nothing)
    local w <close> = assert(fio.watch(file, { kinds = { "modify", "close_write", "attrib" } }))
    while true do
      pos = copy_from(f, pos)
      w:next()
      pos = check_truncated(f, pos)
    end
  end
  -- -F: the name, through its directory: one watch sees appends to it,
  -- and its removal or replacement
  local w <close> = assert(fio.watch(dir, { kinds = { "modify", "close_write", "attrib", "create",
    "move_to", "delete", "move_from" } }))
  while true do
    if f then pos = copy_from(f, pos) end
    local ev = w:next()
    if ev.name == base then
      local k = ev.kind
      if k == "delete" or k == "move_from" then
        if f then
          io.stderr:write(PROG, ": '", file, "' has become inaccessible: No such file or directory\n")
          f:close()
          f = nil
        end
      elseif k == "create" or k == "move_to" then
        local nf = fio.open(file)
        if nf then
          io.stderr:write(PROG, ": '", file, "' has ", f and "been replaced" or "appeared",
            ";  following new file\n")
          if f then f:close() end
          f, pos = nf, 0
        end
      elseif f then
        pos = check_truncated(f, pos)
      end
    end
  end
end

local sig = fio.signal("INT")
local code = fio.run(function()
  local m = fio.async(main)
  local s = fio.async(function() return sig:wait() end)
  local which, r = fio.select(m, s)
  if which == 1 then s:cancel() return r end
  m:cancel()
  out:flush()
  return 130
end)
os.exit(code)

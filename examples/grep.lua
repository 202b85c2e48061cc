-- grep.lua — search files for a Lua pattern, many files at once.
--
--   lua5.4 examples/grep.lua [-n] [-r] [-p N] PATTERN PATH...
--
-- Prints every line that matches PATTERN (a Lua pattern, as string.find
-- takes it) as `path:line`, or `path:number:line` with -n — the format of
-- `grep -H`. With -r, a directory PATH is searched recursively (fio.walk;
-- symbolic links met inside it are not followed, as `grep -r`). The paths (the
-- files named, and what the walks find) go through a fio.queue to 32 worker
-- fibers that read and search the files concurrently; the lines of one file
-- are written in one piece, so the lines of different files never interleave,
-- but files come out in the order their reads end. Each file is searched
-- whole, in C (string.find over the buffer), and cut into lines only around
-- a match, so a file without one costs one search. For a fixed string the
-- output is GNU `grep -rn`'s (in another file order); PATTERN stays a Lua
-- pattern, not a regular expression. A file with a NUL byte is
-- binary: a match prints `grep: path: binary file matches` on stderr instead
-- (as GNU grep 3.8 does).
-- With -p N the reading and searching of each file run on N worker threads
-- (fio.parallel): this script is loaded there as a library.
-- Exit status (as grep's): 0 if a line matched, 1 if none did, 2 on an error
-- (a file that cannot be read, a bad pattern, bad usage).
local fio = require "fiberio"

local PROG = "grep"
local WORKERS = 32

local USAGE, ABOUT = "[-n] [-r] [-p N] PATTERN PATH...",
  "  print the lines of the files that match the Lua pattern PATTERN;\n" ..
  "  -n  prefix each line with its line number\n" ..
  "  -r  search directories recursively\n" ..
  "  -p N  read and search on N worker threads (fio.parallel); 0: here"

local function usage(msg)
  if msg then io.stderr:write(PROG, ": ", msg, "\n") end
  io.stderr:write("usage: ", PROG, " ", USAGE, "\n", ABOUT, "\n")
  os.exit(2)
end

-- The matching lines of text, as grep -H prints them, in one string; or nil.
-- The whole buffer is searched at once (string.find runs over it in C),
-- and lines are cut only around a match: the line holding the match's
-- start is checked on its own (a Lua pattern may run across a newline) and
-- the search goes on from the next line. Patterns anchored with ^ or $,
-- which mean the text's ends to string.find, are tried line by line.
local find, sub, gsub = string.find, string.sub, string.gsub
local function search(path, text, pattern, numbers)
  local plain = not find(pattern, "[%^%$%*%+%?%.%(%)%[%]%%%-]")
  local by_line = find(pattern, "^%^") or find(pattern, "%$$")
  local out, n = {}, 0
  local lineno, counted, pos, len = 1, 1, 1, #text
  while pos <= len do
    local at
    if by_line then at = pos else at = find(text, pattern, pos, plain) end
    if not at then break end
    -- the line around the match's start
    local start = at
    while start > pos and sub(text, start - 1, start - 1) ~= "\n" do
      start = start - 1
      -- (long lines: jump back to the previous newline in one search)
      if start - pos > 64 then
        local s2 = pos
        repeat
          local nl = find(text, "\n", s2, true)
          if not nl or nl >= at then break end
          s2 = nl + 1
        until false
        start = s2
        break
      end
    end
    local nl = find(text, "\n", at, true)
    local stop = nl and nl - 1 or len
    if at > len then break end
    local line = sub(text, start, stop)
    if find(line, pattern, 1, plain) then
      if numbers then
        lineno = lineno + select(2, gsub(sub(text, counted, start - 1), "\n", ""))
        counted = start
      end
      n = n + 1
      out[n] = numbers and (path .. ":" .. lineno .. ":" .. line .. "\n")
                       or (path .. ":" .. line .. "\n")
    end
    pos = stop + 2
  end
  if n > 0 then return table.concat(out) end
end


-- One file: its output (or nil: no match), whether it is binary (a NUL
-- byte), or nil, nil, msg when it cannot be read. Run here, or on a
-- worker thread (-p), where this script is loaded as a library.
local function grep_text(path, pattern, numbers)
  local text, msg = fio.readfile(path)
  if not text then return nil, nil, msg end
  local res = search(path, text, pattern, numbers)
  return res, res and find(text, "\0", 1, true) ~= nil
end

if not arg then -- loaded by a worker (remote_grep): a library
  return { grep_text = grep_text }
end

-- The work of one file on a worker thread: no upvalues (fio.parallel
-- copies the function), so it loads this script there once per worker.
local function remote_grep(script, path, pattern, numbers)
  local lib = GREP_LIB
  if not lib then
    lib = dofile(script)
    GREP_LIB = lib
  end
  return lib.grep_text(path, pattern, numbers)
end

-- Options.
local numbers, recursive, threads = false, false, 0
local i = 1
dofile((arg[0]:match("^(.*)/") or ".") .. "/cli.lua").standard_options(PROG, USAGE, ABOUT, arg, true)
while arg[i] and arg[i]:sub(1, 1) == "-" and #arg[i] > 1 do
  local a = arg[i]
  if a == "--" then i = i + 1 break end
  if a == "-p" then
    threads = math.tointeger(tonumber(arg[i + 1] or ""))
    if not threads or threads < 0 or threads > 1024 then usage("-p needs a whole number, at most 1024") end
    i = i + 1
  else
    for c in a:sub(2):gmatch(".") do
      if c == "n" then numbers = true
      elseif c == "r" then recursive = true
      else usage("unknown option -" .. c) end
    end
  end
  i = i + 1
end
local pattern = arg[i]
if not pattern then usage("PATTERN expected") end
local paths = table.move(arg, i + 1, #arg, 1, {})
if #paths == 0 then usage("PATH expected") end
do
  local ok, err = pcall(string.find, "", pattern)
  if not ok then
    io.stderr:write(PROG, ": ", (tostring(err):gsub("^.-: ", "")), "\n")
    os.exit(2)
  end
end

local matched, errors = false, false
local function fail(msg)
  io.stderr:write(PROG, ": ", msg, "\n")
  errors = true
end

-- Write one file's output in one call: fiberio's File writes the whole string
-- before another write on the same handle starts.
local function emit(s)
  local ok, err = fio.stdout:write(s)
  if not ok then
    io.stderr:write(PROG, ": write error: ", tostring(err), "\n")
    os.exit(2)
  end
end

local script = arg[0]
local function grep_file(path)
  local ok, res, binary, msg
  if threads > 0 then
    ok, res, binary, msg = pcall(function()
      return fio.parallel(remote_grep, script, path, pattern, numbers):await()
    end)
  else
    ok, res, binary, msg = pcall(grep_text, path, pattern, numbers)
  end
  if not ok then
    if res == fio.Canceled then error(res, 0) end
    fail(pattern .. ": " .. tostring(res):gsub("^.-: ", ""))
    fio.stdout:flush()
    os.exit(2) -- a bad pattern fails every file alike
  end
  if msg then return fail(msg) end
  if not res then return end
  matched = true
  if binary then
    io.stderr:write(PROG, ": ", path, ": binary file matches\n")
  else
    emit(res)
  end
end

-- Put the path of every file to search in `files`, then close it.
local function feed(files)
  for _, path in ipairs(paths) do
    local st, msg = fio.stat(path) -- command-line links are followed
    if not st then
      fail(msg)
    elseif st.type == "directory" then
      if not recursive then
        fail(path .. ": Is a directory")
      else
        local onerror = function(p, m) fail(m or p) end
        for epath, etype in fio.walk(path, { onerror = onerror }) do
          local t = etype
          if t == "unknown" then
            local lst = fio.lstat(epath)
            t = lst and lst.type
          end
          if t == "file" then files:put(epath) end
        end
      end
    else
      files:put(path)
    end
  end
  files:close()
end

-- Take paths from `files` until it is closed and drained.
local function worker(files)
  while true do
    local path = files:get()
    if path == nil then return end
    grep_file(path)
  end
end

local function main()
  -- The feeder and the workers are members of one group: should one fail,
  -- the group cancels the others and wait re-raises.
  local files = fio.queue(WORKERS)
  local g = fio.group()
  g:async(feed, files)
  for _ = 1, WORKERS do g:async(worker, files) end
  g:wait()
  local ok, err = fio.stdout:flush()
  if not ok then fail("write error: " .. tostring(err)) end
end

-- -p N bounds the worker threads: configuration, before the loop runs.
if threads > 0 then fio.config { threads = threads } end
fio.run(main)
os.exit(errors and 2 or matched and 0 or 1, true) -- (close the state: workers are joined)

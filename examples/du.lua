-- du.lua — disk usage of trees, as `du -s` prints it.
--
--   lua5.4 examples/du.lua [-x] PATH...
--
-- For each PATH, one line: the space its files take on disk, in KiB
-- (1024-byte blocks, rounded as du rounds: from each file's st_blocks), a
-- tab, the path. A file with several hard links is counted once, across
-- all the PATHs, as du does. -x: stay on each PATH's file system.
--
-- How: one fio.walk{stat = true} per PATH: directories read on pool
-- threads, every entry with its lstat from the walk itself (no stat call
-- from Lua), the sizes summed as the entries come.
--
-- Exit status: 0, or 1 if a directory could not be read (reported as
-- "du: path: message"; the rest is still counted).
local fio = require "fiberio"

local PROG = "du"
local status = 0
local seen = {} -- "dev:ino" of files with several links, counted already
local seen_dirs -- with several PATHs: "dev:ino" of directories counted

local USAGE, ABOUT = "[-q] [-x] PATH...",
  "  the disk usage of each PATH in KiB, as du -s; -x: stay on its file system;\n" ..
  "  -q: no progress line"
local cli = dofile((arg[0]:match("^(.*)/") or ".") .. "/cli.lua")
cli.standard_options(PROG, USAGE, ABOUT, arg)

local usage = cli.usage(PROG, USAGE)

local quiet = false
local progress -- (made once the options are read)
local counted, counted_bytes = 0, 0

local function onerror(_, msg)
  progress:done()
  io.stderr:write(PROG, ": ", msg, "\n")
  status = 1
end

-- 512-byte blocks of an entry, or 0 when it is a second name of a file.
local function blocks(st)
  if st.type == "directory" then
    if seen_dirs then seen_dirs[st.dev .. ":" .. st.ino] = true end
  elseif st.nlink > 1 then
    local key = st.dev .. ":" .. st.ino
    if seen[key] then return 0 end
    seen[key] = true
  end
  return st.blocks
end

local function usage_of(path, xdev)
  local top, msg = fio.lstat(path)
  if not top then
    onerror(path, msg)
    return nil
  end
  if seen_dirs and top.type == "directory" and seen_dirs[top.dev .. ":" .. top.ino] then
    return 0 -- (counted under an earlier PATH, as du does)
  end
  local total = blocks(top)
  if top.type == "directory" then
    -- A directory counted under an earlier PATH is skipped with all that
    -- is below it: the walk lists that right after it.
    local skip
    for p, _, st in fio.walk(path, { stat = true, xdev = xdev, onerror = onerror }) do
      -- (an entry below a directory counted already: skipped)
      if not (skip and p:sub(1, #skip) == skip) and st then
        skip = nil
        if seen_dirs and st.type == "directory" and seen_dirs[st.dev .. ":" .. st.ino] then
          skip = p .. "/"
        else
          total = total + blocks(st)
          counted, counted_bytes = counted + 1, counted_bytes + st.size
          progress:update(counted, counted_bytes)
        end
      end
    end
  end
  return (total + 1) // 2 -- 512-byte blocks to KiB, rounded up
end

local xdev, paths = false, {}
for _, a in ipairs(arg) do
  if a == "-x" then xdev = true
  elseif a == "-q" then quiet = true
  elseif a == "-s" then xdev = xdev -- (the only form: accepted for du's sake)
  elseif a:sub(1, 1) == "-" and #a > 1 then usage("unknown option " .. a)
  else paths[#paths + 1] = a end
end
if #paths == 0 then paths[1] = "." end
if #paths > 1 then seen_dirs = {} end
progress = cli.progress(quiet)

for _, p in ipairs(paths) do
  local kib = usage_of(p, xdev)
  progress:done()
  if kib then io.write(kib, "\t", p, "\n") end
end
os.exit(status)

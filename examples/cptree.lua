-- cptree.lua — copy a directory tree, many files at once.
--
--   lua5.4 examples/cptree.lua SRC DST
--
-- DST must not exist; it becomes a copy of SRC with the same bytes, the same
-- permission modes and the same symbolic links (copied as links, their target
-- text unchanged), as `cp -a SRC DST` makes for regular files, directories and
-- links. Not kept: owners, timestamps, extended attributes, hard links
-- (each name becomes its own file). FIFOs, sockets and devices are skipped with
-- a warning.
--
-- How: fio.walk lists SRC (directories read concurrently); each directory is
-- made as soon as the walk reports it (a directory is always reported before
-- what is in it), at first with mode 0700 so that it can be filled; files are
-- copied by the kernel (fio.copyfile) and links remade (fio.readlink +
-- fio.symlink) by the members of a bounded group, fio.group{limit = 64}: at
-- most 64 copies run at once, the others wait their turn (the walk does not
-- wait: each file waiting its turn is a fiber, about 1 KiB; for trees of
-- millions of files, a fio.queue between the walk and 64 workers, as in
-- treesum.lua, keeps the memory flat); last, the directories get their
-- modes, deepest first, so that read-only directories work.
--
-- Interrupted (SIGINT, e.g. Ctrl-C, or SIGTERM): the copies in flight are
-- canceled and the queued ones never start; every file in DST is then whole
-- (fio.copyfile writes beside its destination and renames, so a canceled copy
-- leaves nothing behind), but DST lacks what was not copied yet and its
-- directories may still have mode 0700. cptree says so on stderr and exits
-- with 128 + the signal's number (130, 143), as a shell reports a process
-- killed by it.
--
-- Exit status: 0 if everything was copied, 1 if anything failed (the rest is
-- still copied, each failure reported as "cptree: path: message"), 2 on bad
-- usage, 130 or 143 when interrupted.
local fio = require "fiberio"

local PROG = "cptree"
local LIMIT = 64 -- copies in flight at most
local S_700 = tonumber("700", 8)

local function usage(msg)
  if msg then io.stderr:write(PROG, ": ", msg, "\n") end
  io.stderr:write("usage: ", PROG, " SRC DST\n",
    "  copy the tree SRC to DST (which must not exist): files, modes, symlinks\n")
  os.exit(2)
end

local status = 0
local function fail(msg)
  io.stderr:write(PROG, ": ", msg, "\n")
  status = 1
end

-- Run body(g) with a new group that runs at most LIMIT members at once, then
-- wait for the members. If body raises (fio.Canceled included: the copy was
-- interrupted), the members are canceled, and waited for, first.
local function bounded(body, ...)
  local g = fio.group { limit = LIMIT }
  local ok, err = pcall(body, g, ...)
  if not ok then
    g:cancel()
    error(err, 0)
  end
  return g:wait()
end

-- Each task reports its own failure and returns; only Canceled is raised.
local function guarded(fn)
  return function(...)
    local ok, err = pcall(fn, ...)
    if not ok then
      if err == fio.Canceled then error(err, 0) end
      fail(tostring(err))
    end
  end
end

-- A regular file: the kernel copies the bytes; copyfile's mode is masked by
-- the umask, so the exact mode is set afterwards (as cp -a does).
local copy_file = guarded(function(src, dst, perm)
  local ok, msg = fio.copyfile(src, dst)
  if not ok then return fail(msg) end
  if not perm then
    local st, smsg = fio.lstat(src)
    if not st then return fail(smsg) end
    perm = st.perm
  end
  ok, msg = fio.chmod(dst, perm)
  if not ok then fail(msg) end
end)

-- A symbolic link: the same target text, not resolved.
local copy_link = guarded(function(src, dst)
  local target, msg = fio.readlink(src)
  if not target then return fail(msg) end
  local ok, smsg = fio.symlink(target, dst)
  if not ok then fail(smsg) end
end)

local set_mode = guarded(function(src, dst)
  local st, msg = fio.lstat(src)
  if not st then return fail(msg) end
  local ok, cmsg = fio.chmod(dst, st.perm)
  if not ok then fail(cmsg) end
end)

local function dirname(p)
  return p:match("^(.*[^/])/+[^/]*/*$") or (p:sub(1, 1) == "/" and "/" or ".")
end

-- Copy what the walk of SRC reports into DST (made already) by members of g;
-- directories are made here and listed in dirs.
local function copy_entries(g, src, dst, dirs)
  local prefix = src:sub(-1) == "/" and src or src .. "/"
  local onerror = function(path, m) fail(m or path) end
  for epath, etype in fio.walk(src, { onerror = onerror }) do
    local rel = epath:sub(#prefix + 1)
    local to = dst .. "/" .. rel
    local t = etype
    if t == "unknown" then -- the file system did not say: ask
      local st = fio.lstat(epath)
      t = st and st.type or "unknown"
    end
    if t == "directory" then
      -- made now, before the walk reports anything inside it
      local dok, dmsg = fio.mkdir(to, S_700)
      if dok then
        local _, depth = rel:gsub("/", "")
        dirs[#dirs + 1] = { epath, to, depth + 1 }
      else
        fail(dmsg)
      end
    elseif t == "file" then
      g:async(copy_file, epath, to)
    elseif t == "link" then
      g:async(copy_link, epath, to)
    else
      io.stderr:write(PROG, ": warning: ", epath, ": skipping ", t, "\n")
    end
  end
end

-- Set the modes of dirs[i .. j] (all of one depth).
local function set_modes(g, dirs, i, j)
  for k = i, j do g:async(set_mode, dirs[k][1], dirs[k][2]) end
end

local function copy(src, dst)
  local sst, msg = fio.lstat(src)
  if not sst then return fail(msg) end
  if fio.lstat(dst) then return fail(dst .. ": File exists") end

  if sst.type == "file" then copy_file(src, dst, sst.perm) return end
  if sst.type == "link" then copy_link(src, dst) return end
  if sst.type ~= "directory" then
    return fail(src .. ": not a regular file, directory or symbolic link")
  end

  -- DST inside SRC would be walked while it grows.
  local rsrc = fio.realpath(src)
  local rparent = fio.realpath(dirname(dst))
  if rsrc and rparent and (rparent == rsrc or rparent:sub(1, #rsrc + 1) == rsrc .. "/"
                           or rsrc == "/") then
    return fail("cannot copy a directory, '" .. src .. "', into itself, '" .. dst .. "'")
  end

  local ok, mmsg = fio.mkdir(dst, S_700)
  if not ok then return fail(mmsg) end
  local dirs = { { src, dst, 0 } } -- source, copy, depth: modes are set last
  bounded(copy_entries, src, dst, dirs)

  -- Directory modes, deepest first: one depth at a time, so that a parent
  -- made unsearchable does not stop its children's chmod.
  table.sort(dirs, function(a, b) return a[3] > b[3] end)
  local i = 1
  while i <= #dirs do
    local j = i
    while j < #dirs and dirs[j + 1][3] == dirs[i][3] do j = j + 1 end
    bounded(set_modes, dirs, i, j)
    i = j + 1
  end
end

-- The signals that stop a copy, and their numbers (for the exit status).
local SIGNALS = { { "INT", 2 }, { "TERM", 15 } }

-- Copy, unless a signal comes first: then cancel the copy (which cancels its
-- group) and report it.
local function main(src, dst)
  local watchers = {}
  for k, sig in ipairs(SIGNALS) do
    local s = fio.signal(sig[1]) -- from now on delivered here, not fatal
    watchers[k] = fio.async(function()
      local sigs <close> = s
      return s:wait()
    end)
  end
  local copying = fio.async(copy, src, dst)
  local i, name = fio.select(copying, table.unpack(watchers))
  for _, w in ipairs(watchers) do w:cancel() end
  if i == 1 then return copying:await() end
  copying:cancel()
  io.stderr:write(PROG, ": interrupted by SIG", name, "; ", dst,
    " is incomplete (every file in it is whole)\n")
  for _, sig in ipairs(SIGNALS) do
    if sig[1] == name then status = 128 + sig[2] end
  end
end

if #arg ~= 2 or arg[1] == "" or arg[2] == "" then
  usage(#arg < 2 and "SRC and DST expected" or (#arg > 2 and "too many arguments" or "empty path"))
end
fio.run(main, arg[1], arg[2])
os.exit(status)

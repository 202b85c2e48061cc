-- cptree.lua — copy a directory tree as `cp -a` does, many files at once.
--
--   lua5.4 examples/cptree.lua SRC DST
--
-- DST must not exist; it becomes a copy of SRC keeping what `cp -a` keeps
-- and its user may keep: the bytes; the types (directories, files,
-- symbolic links with their target text, FIFOs, sockets, and devices when
-- run as root); permission modes; owners (as root: another user cannot
-- give files away, and cp -a then keeps what it can, as here); access and
-- modification times to the nanosecond; extended attributes; hard links
-- between files of the tree (made again as links, not copied twice).
--
-- How: one fio.walk{stat = true} of SRC (directories read on pool threads,
-- each entry with its lstat) feeds a bounded fio.queue that 64 worker
-- fibers empty: memory stays flat whatever the size of the tree. Each
-- directory is made when the walk reports it (before anything inside it),
-- with mode 0700 so that it can be filled; files are copied by the kernel
-- (fio.copyfile), then get their attributes, owner, mode and times. The
-- second and later names of a hard-linked file are linked to the first
-- once every copy is done. Last, the directories get theirs, deepest
-- first (so that a read-only directory is finished after its contents,
-- and no later write changes its times).
--
-- Interrupted (SIGINT, e.g. Ctrl-C, or SIGTERM): the copies in flight are
-- canceled and the queued ones never start; every file in DST is then whole
-- (fio.copyfile writes beside its destination and renames, so a canceled copy
-- leaves nothing behind), but DST lacks what was not copied yet and its
-- directories may still have mode 0700. cptree says so on stderr and exits
-- with 128 + the signal's number (130, 143), as a shell reports a process
-- killed by it.
--
-- Exit status: 0 if everything was copied, 1 if anything failed or was
-- skipped (the rest is still copied, each failure reported as
-- "cptree: path: message"), 2 on bad usage, 130 or 143 when interrupted.
-- On a terminal, a progress line on stderr (files and bytes copied, rate,
-- time); -q: none.
local fio = require "fiberio"

local PROG = "cptree"
local WORKERS = 64 -- copies in flight at most
local S_700 = tonumber("700", 8)
local EPERM, ENOTSUP, ENODATA = fio.errno.EPERM, fio.errno.ENOTSUP, fio.errno.ENODATA

local USAGE, ABOUT = "[-q] SRC DST",
  "  copy the tree SRC to DST (which must not exist) as cp -a does; -q: no progress line"
local cli = dofile((arg[0]:match("^(.*)/") or ".") .. "/cli.lua")
cli.standard_options(PROG, USAGE, ABOUT, arg)
local usage = cli.usage(PROG, USAGE, ABOUT)

local quiet = arg[1] == "-q"
if quiet then table.remove(arg, 1) end
local progress = cli.progress(quiet)
local copied, copied_bytes = 0, 0

local status = 0
local function fail(msg)
  progress:done()
  io.stderr:write(PROG, ": ", msg, "\n")
  status = 1
end

-- What a copy needs of an entry's lstat (the walk refills its table).
local function meta(st)
  return { type = st.type, perm = st.perm, uid = st.uid, gid = st.gid, rdev = st.rdev,
    atime_ns = st.atime_ns, mtime_ns = st.mtime_ns, size = st.size }
end

-- Extended attributes of src onto dst (the link's own, as cp -a). A file
-- system without them is not a failure, as with cp -a.
local function copy_xattrs(src, dst)
  local names, msg, err = fio.llistxattr(src)
  if not names then
    if err ~= ENOTSUP then fail(msg) end
    return
  end
  for _, name in ipairs(names) do
    local v, gmsg, gerr = fio.lgetxattr(src, name)
    if v then
      local ok, smsg, serr = fio.lsetxattr(dst, name, v)
      if not ok and serr ~= ENOTSUP and not (serr == EPERM and name:sub(1, 5) ~= "user.") then
        fail(smsg)
      end
    elseif gerr ~= ENODATA then
      fail(gmsg)
    end
  end
end

-- Attributes, owner, mode and times of dst from m (src's), in cp's order:
-- the owner before the mode (a chown clears set-user-ID bits).
local function finish(src, dst, m)
  copy_xattrs(src, dst)
  local ok, msg, err = fio.lchown(dst, m.uid, m.gid)
  if not ok and err ~= EPERM then fail(msg) end -- (not root: kept as cp -a)
  if m.type ~= "link" then
    ok, msg = fio.chmod(dst, m.perm)
    if not ok then fail(msg) end
  end
  ok, msg = fio.lutime(dst, m)
  if not ok then fail(msg) end
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

-- One entry that is not a directory: made at dst, then finished.
local copy_one = guarded(function(src, dst, m)
  local ok, msg
  local t = m.type
  if t == "file" then
    ok, msg = fio.copyfile(src, dst)
  elseif t == "link" then
    local target
    target, msg = fio.readlink(src)
    if target then ok, msg = fio.symlink(target, dst) end
  elseif t == "fifo" then
    ok, msg = fio.mkfifo(dst, S_700)
  elseif t == "char" or t == "block" or t == "socket" then
    ok, msg = fio.mknod(dst, t, S_700, m.rdev)
  else
    msg = src .. ": cannot copy a file of type " .. t
  end
  if not ok then return fail(msg) end
  finish(src, dst, m)
end)

local function dirname(p)
  return p:match("^(.*[^/])/+[^/]*/*$") or (p:sub(1, 1) == "/" and "/" or ".")
end

-- Walk src into the queue (directories made here, listed in dirs; second
-- names of hard-linked files in links), then close it.
local function walk(src, dst, q, dirs, links)
  local prefix = #src + (src:sub(-1) == "/" and 1 or 2)
  local first = {} -- "dev:ino" -> the copy of its first name
  local onerror = function(_, m) fail(m) end
  for path, t, st in fio.walk(src, { stat = true, onerror = onerror }) do
    local to = dst .. "/" .. path:sub(prefix)
    if not st then
      fail(path .. ": vanished during the copy")
    elseif t == "directory" then
      -- made now, before the walk reports anything inside it
      local ok, msg = fio.mkdir(to, S_700)
      if ok then
        local _, depth = to:gsub("/", "")
        dirs[#dirs + 1] = { path, to, meta(st), depth }
      else
        fail(msg)
      end
    else
      local key = st.nlink > 1 and t ~= "directory" and st.dev .. ":" .. st.ino
      local earlier = key and first[key]
      if earlier then
        links[#links + 1] = { earlier, to }
      else
        if key then first[key] = to end
        q:put({ path, to, meta(st) })
      end
    end
  end
  q:close()
end

local function copy(src, dst)
  local sst, msg = fio.lstat(src)
  if not sst then return fail(msg) end
  if fio.lstat(dst) then return fail(dst .. ": File exists") end
  if sst.type ~= "directory" then return copy_one(src, dst, meta(sst)) end

  -- DST inside SRC would be walked while it grows.
  local rsrc = fio.realpath(src)
  local rparent = fio.realpath(dirname(dst))
  if rsrc and rparent and (rparent == rsrc or rparent:sub(1, #rsrc + 1) == rsrc .. "/"
                           or rsrc == "/") then
    return fail("cannot copy a directory, '" .. src .. "', into itself, '" .. dst .. "'")
  end

  local ok, mmsg = fio.mkdir(dst, S_700)
  if not ok then return fail(mmsg) end
  local dirs = { { src, dst, meta(sst), 0 } } -- finished last
  local links = {}
  local q = fio.queue(WORKERS * 4)
  local g = fio.group()
  g:async(walk, src, dst, q, dirs, links)
  for _ = 1, WORKERS do
    g:async(function()
      while true do
        local item = q:get()
        if not item then return end
        copy_one(item[1], item[2], item[3])
        copied, copied_bytes = copied + 1, copied_bytes + item[3].size
        progress:update(copied, copied_bytes)
      end
    end)
  end
  g:wait() -- (a Canceled raised here cancels the members first)

  for _, l in ipairs(links) do
    local lok, lmsg = fio.link(l[1], l[2])
    if not lok then fail(lmsg) end
  end

  -- Directories deepest first, one depth at a time: a parent made
  -- unsearchable does not stop its children, and nothing is written in a
  -- directory after its times are set.
  table.sort(dirs, function(a, b) return a[4] > b[4] end)
  local i = 1
  while i <= #dirs do
    local j = i
    while j < #dirs and dirs[j + 1][4] == dirs[i][4] do j = j + 1 end
    local lg = fio.group { limit = WORKERS }
    for k = i, j do lg:async(guarded(finish), dirs[k][1], dirs[k][2], dirs[k][3]) end
    lg:wait()
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
      local guard <close> = s
      return s:wait()
    end)
  end
  local copying = fio.async(copy, src, dst)
  local ok, i, name = pcall(fio.select, copying, table.unpack(watchers))
  for _, w in ipairs(watchers) do w:cancel() end
  progress:done()
  if not ok then error(i, 0) end -- (a bug: the watchers go first)
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

-- fiberio.fs — the file-system helpers written over the C core's calls:
-- fio.mkdirp, fio.scandir, fio.walk.
--
-- This file returns a function that init.lua calls with the module table,
-- to put them there (each function then has one name, fiberio.NAME, in
-- tracebacks: see init.lua).
local core = require "fiberio.core"
local check = require "fiberio.check"

local mkdir, stat, readdir = core.mkdir, core.stat, core.readdir
local errno -- fio.errno, once installed
local argerror, checkopts = check.argerror, check.opts

-- fio.mkdirp(path [, perm]) -> true: path and its missing parents.
local function mkdirp(path, perm)
  local ok, msg, err = mkdir(path, perm)
  if ok then return true end
  if err == errno.EEXIST then -- fine if it is a directory
    local st = stat(path)
    if st and st.type == "directory" then return true end
    return nil, msg, err
  end
  if err ~= errno.ENOENT then return nil, msg, err end -- make the parent first
  local parent = path:match("^(.*[^/])/+[^/]+/*$")
  if not parent or parent == path then return nil, msg, err end
  local pok, pmsg, perr = mkdirp(parent, perm)
  if not pok then return nil, pmsg, perr end
  ok, msg, err = mkdir(path, perm)
  if ok or err == errno.EEXIST then return true end
  return nil, msg, err
end

local function checked_mkdirp(path, perm)
  if type(path) ~= "string" then argerror(1, "mkdirp", "string expected, got " .. type(path)) end
  if perm ~= nil then -- (as mkdir reads it: raised here, at the caller's line)
    local n = math.type(perm) == "integer" and perm
      or type(perm) == "string" and perm:match("^[0-7]+$") and tonumber(perm, 8)
    if not n or n < 0 or n > 4095 then
      argerror(2, "mkdirp", 'permission must be an integer or an octal string such as "0755" (0 to 07777)')
    end
  end
  return mkdirp(path, perm)
end

-- fio.scandir(path) -> iterator of name, type (nil, msg, errno on failure).
local function scandir(path)
  local list, msg, err = readdir(path)
  if not list then return nil, msg, err end
  local i = 0
  return function()
    i = i + 1
    local e = list[i]
    if e then return e.name, e.type end
  end
end

-- fio.walk(root [, opts]) -> iterator of path, type [, st] for every entry
-- below root (not root itself), in depth-first order: a directory's entry,
-- then everything below it, then its next sibling. The reading is done by
-- the C core (core._walk: csrc/io/walk.c) on pool threads, several
-- directories at once. Options: maxdepth, enter(path) -> falsy to skip a
-- directory's contents, follow, xdev, stat (st: one table refilled for
-- each entry), sort, onerror(path, msg, errno), concurrency.
local WALK_OPTS = { concurrency = true, onerror = true, enter = true, maxdepth = true,
  follow = true, xdev = true, stat = true, sort = true }
local walk_core, WALKFLAGS = core._walk, core._walkflags
local function walk(root, opts)
  if type(root) ~= "string" then argerror(1, "walk", "string expected, got " .. type(root)) end
  checkopts(opts, 2, "walk", WALK_OPTS)
  opts = opts or {}
  local jobs = opts.concurrency or 4
  if math.type(jobs) ~= "integer" or jobs < 1 then
    argerror(2, "walk", "concurrency must be a positive integer")
  end
  local maxdepth = opts.maxdepth or -1
  if opts.maxdepth ~= nil and (math.type(maxdepth) ~= "integer" or maxdepth < 0) then
    argerror(2, "walk", "maxdepth must be a non-negative integer")
  end
  for _, k in ipairs { "onerror", "enter" } do
    if opts[k] ~= nil and type(opts[k]) ~= "function" then
      argerror(2, "walk", k .. " must be a function")
    end
  end
  local flags = 0
  for k, bit in pairs(WALKFLAGS) do
    if opts[k] then flags = flags | bit end
  end
  return walk_core(root, flags, maxdepth, jobs, opts.onerror, opts.enter)
end

-- fio.rmtree(path [, opts]) -> true: path and everything below it, as
-- rm -rf: files and links removed 32 at a time, then each level of
-- directories, deepest first. A directory on another file system than
-- path's (a mount point) is neither entered nor removed, unless
-- opts.cross: the call then ends nil, "dir: ...", EXDEV, the rest removed
-- (as rm -r --one-file-system). The first failure is returned once all
-- else is done.
local RMTREE_OPTS = { cross = true }
local function make_rmtree(fio)
  local lstat, unlink, rmdir = core.lstat, core.unlink, core.rmdir
  return function(path, opts)
    if type(path) ~= "string" then argerror(1, "rmtree", "string expected, got " .. type(path)) end
    checkopts(opts, 2, "rmtree", RMTREE_OPTS)
    local cross = opts and opts.cross
    local top, msg, err = lstat(path)
    if not top then return nil, msg, err end
    if top.type ~= "directory" then return unlink(path) end
    local fail, fmsg, ferr
    local function failed(m, e)
      if not fail then fail, fmsg, ferr = true, m, e end
    end
    local function remove(p)
      local ok, m, e = unlink(p)
      if not ok and e ~= errno.ENOENT then failed(m, e) end
    end
    local levels, deepest = {}, 0 -- directories by depth
    local g = fio.group { limit = 32 }
    local base = #path + (path:sub(-1) == "/" and 0 or 1)
    for p, t, st in walk(path, { stat = true, xdev = not cross,
      onerror = function(_, m, e) if e ~= errno.ENOENT then failed(m, e) end end }) do
      if t == "directory" then
        if st and st.dev ~= top.dev and not cross then
          failed(p .. ": is on another file system (rmtree's cross = true removes it)", errno.EXDEV)
        else
          local _, depth = p:sub(base + 1):gsub("/", "")
          depth = depth + 1
          local l = levels[depth]
          if not l then l = {}; levels[depth] = l end
          l[#l + 1] = p
          if depth > deepest then deepest = depth end
        end
      else
        g:async(remove, p)
      end
    end
    g:wait()
    local function remove_dir(p)
      local ok, m, e = rmdir(p)
      if not ok and e ~= errno.ENOENT and not fail then failed(m, e) end
    end
    for depth = deepest, 1, -1 do
      for _, p in ipairs(levels[depth]) do g:async(remove_dir, p) end
      g:wait()
    end
    if not fail then
      local ok, m, e = rmdir(path)
      if not ok then failed(m, e) end
    end
    if fail then return nil, fmsg, ferr end
    return true
  end
end

return function(fio)
  errno = fio.errno
  fio.mkdirp, fio.scandir, fio.walk = checked_mkdirp, scandir, walk
  fio.rmtree = make_rmtree(fio)
end

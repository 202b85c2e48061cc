-- fiberio.fs — the file-system helpers written over the C core's calls:
-- fio.mkdirp, fio.scandir, fio.walk.
--
-- This file returns a function that init.lua calls with the module table,
-- to put them there (each function then has one name, fiberio.NAME, in
-- tracebacks: see init.lua).
local core = require "fiberio.core"
local check = require "fiberio.check"

local mkdir, stat, readdir, select_ = core.mkdir, core.stat, core.readdir, core.select
local async, request_cancel = core.async, core._request_cancel
local errno = core.errno
local argerror, checkopts = check.argerror, check.opts
local unpack = table.unpack

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

-- fio.walk(root [, opts]) -> iterator over every entry below root as
-- {path=, name=, type=}, in no promised order; directories are read
-- concurrently, at most opts.concurrency (default 16) at once. A directory
-- that cannot be read raises, unless opts.onerror(path, msg, errno) is given
-- (then the walk goes on). Symbolic links are reported, not followed.
-- Breaking out of the loop cancels the reads still running.
local WALK_OPTS = { concurrency = true, onerror = true }
local function walk(root, opts)
  if type(root) ~= "string" then argerror(1, "walk", "string expected, got " .. type(root)) end
  checkopts(opts, 2, "walk", WALK_OPTS)
  local limit = opts and opts.concurrency or 16
  local onerror = opts and opts.onerror
  if math.type(limit) ~= "integer" or limit < 1 then
    argerror(2, "walk", "concurrency must be a positive integer")
  end
  if onerror ~= nil and type(onerror) ~= "function" then
    argerror(2, "walk", "onerror must be a function")
  end
  local todo, ntodo = { root }, 1     -- directories not started (a stack)
  local running = {}                   -- futures: readdir of a directory
  local out, first, last = {}, 1, 0    -- entries ready to hand out
  local function list(dir)
    return dir, readdir(dir)
  end
  local function iter()
    while first > last do
      while #running < limit and ntodo > 0 do
        local dir = todo[ntodo]
        todo[ntodo] = nil
        ntodo = ntodo - 1
        running[#running + 1] = async(list, dir)
      end
      if #running == 0 then return nil end
      local i, dir, entries, msg, err = select_(unpack(running))
      table.remove(running, i)
      if not entries then
        if onerror then onerror(dir, msg, err)
        else
          for j = 1, #running do request_cancel(running[j]) end
          error(msg, 2)
        end
      else
        local prefix = dir:sub(-1) == "/" and dir or dir .. "/"
        for j = 1, #entries do
          local e = entries[j]
          local p = prefix .. e.name
          e.path = p
          last = last + 1
          out[last] = e
          if e.type == "directory" then
            ntodo = ntodo + 1
            todo[ntodo] = p
          end
        end
      end
    end
    local e = out[first]
    out[first] = nil
    first = first + 1
    return e
  end
  local closer = setmetatable({}, { __close = function()
    for j = 1, #running do request_cancel(running[j]) end
  end })
  return iter, nil, nil, closer
end

return function(fio)
  fio.mkdirp, fio.scandir, fio.walk = checked_mkdirp, scandir, walk
end

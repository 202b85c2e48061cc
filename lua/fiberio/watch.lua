-- fiberio.watch — fio.watch over inotify: one inotify instance per Lua
-- state (so per loop), shared by its Watchers; each watch asks for every
-- kind, and each Watcher keeps the kinds it wants. Nobody reads the
-- instance in the background: a Watcher's next() reads it when its own
-- queue is empty (one reader at a time; the others wait for it), and
-- hands each event to the Watchers it is for. So no fiber is left running
-- by a watch, and a script ends when its work does.
--
-- This file returns a function that init.lua calls with the module table.
local core = require "fiberio.core"
local check = require "fiberio.check"

local argerror, checkopts = check.argerror, check.opts
local B = core._inotify_bits()
local init, add, rm, fdclose, readsome, pollin =
  core._inotify_init, core._inotify_add, core._inotify_rm, core._fdclose, core._readsome, core._pollin
local unpack = string.unpack

local KINDS = {
  create = B.IN_CREATE, delete = B.IN_DELETE, modify = B.IN_MODIFY, attrib = B.IN_ATTRIB,
  move_from = B.IN_MOVED_FROM, move_to = B.IN_MOVED_TO, close_write = B.IN_CLOSE_WRITE,
  delete_self = B.IN_DELETE_SELF, move_self = B.IN_MOVE_SELF,
}
local ALL = 0
for _, bit in pairs(KINDS) do ALL = ALL | bit end
local KIND_OF = {} -- bit -> kind
for k, bit in pairs(KINDS) do KIND_OF[bit] = k end
local WATCH_OPTS = { kinds = true, recursive = true, links = true }
local IN_ISDIR = B.IN_ISDIR
local NONE = {}

return function(fio)
  local inst -- { fd, bywd = {wd -> {[watcher] = dir path}}, nwatchers, reading, mu, cond }

  local Watcher = {}
  Watcher.__index = Watcher
  Watcher.__name = "fiberio.Watcher"

  local function push(w, ev)
    w.last = w.last + 1
    w.q[w.last] = ev
  end

  -- Watch dir (a directory or file) for w; its events' paths start with
  -- path. nil, msg, errno when the kernel refuses.
  local function watch_one(w, path, follow)
    local wd, msg, err = add(inst.fd, path, ALL | (follow and 0 or B.IN_DONT_FOLLOW))
    if not wd then return nil, msg, err end
    local m = inst.bywd[wd]
    if not m then
      m = setmetatable({}, { __mode = "k" }) -- (a Watcher collected: gone)
      inst.bywd[wd] = m
    end
    m[w] = path
    w.wds[wd] = path
    w.base[wd] = path:match("[^/]*$") -- (the name of the watched file's own events)
    return wd
  end

  -- Watch every directory below path for a recursive w; with report, each
  -- entry found is reported as created (a directory made just before its
  -- watch: what it got meanwhile is not lost).
  local function watch_below(w, path, report)
    for p, t in fio.walk(path, { onerror = function() end }) do
      if t == "directory" then
        local ok, msg, err = watch_one(w, p, false)
        if not ok and err == fio.errno.ENOSPC then
          push(w, { kind = "error", path = p, message = msg, errno = err })
        end
      end
      if report and w.want.create then
        push(w, { kind = "create", path = p, name = p:match("[^/]*$"), dir = t == "directory" })
      end
    end
  end

  local function drop_wd(wd)
    local m = inst.bywd[wd]
    if not m then return end
    for w in pairs(m) do w.wds[wd] = nil; w.base[wd] = nil end
    inst.bywd[wd] = nil
  end

  -- Hand out the events in data (whole inotify_event records).
  local function dispatch(data)
    local pos, n = 1, #data
    while pos + 15 <= n do
      local wd, mask, cookie, len = unpack("=i4I4I4I4", data, pos)
      local name = len > 0 and unpack("z", data, pos + 16) or "" -- (NUL-padded)
      pos = pos + 16 + len
      if mask & B.IN_Q_OVERFLOW ~= 0 then
        for w in pairs(inst.watchers) do push(w, { kind = "overflow" }) end
      elseif mask & B.IN_IGNORED ~= 0 then
        drop_wd(wd) -- (the watch is gone: its file deleted, or removed)
      else
        local m = inst.bywd[wd]
        local isdir = mask & IN_ISDIR ~= 0
        for w, dir in next, m or NONE do
          local path = name ~= "" and (dir == "/" and "/" .. name or dir .. "/" .. name) or dir
          local bits = mask & ALL
          while bits ~= 0 do -- (one kind per event, as a rule)
            local bit = bits & -bits
            bits = bits ~ bit
            local kind = KIND_OF[bit]
            if w.want[kind] then
              local last = w.last + 1
              w.last = last
              w.q[last] = { kind = kind, path = path, name = name ~= "" and name or w.base[wd],
                cookie = cookie ~= 0 and cookie or nil, dir = isdir }
            end
          end
          if w.recursive and isdir and name ~= "" and mask & (B.IN_CREATE | B.IN_MOVED_TO) ~= 0 then
            -- a new directory below: watched, and what it holds already
            -- reported (the race between its mkdir and this watch)
            if watch_one(w, path, false) then watch_below(w, path, true) end
          end
        end
      end
    end
  end

  -- Read the instance once and dispatch: what it holds now, else (unless
  -- nowait) once it is readable, at most until deadline. The fd is read
  -- only while it is still the instance's (a close during the wait may
  -- have given its number to another file).
  local function pump_read(cur, deadline, nowait)
    local d, m = readsome(cur.fd)
    if d == nil and m == nil then
      if nowait then return nil end
      local left = deadline and deadline - fio.now()
      if left and left <= 0 then return nil, "timeout" end
      local ok, pm = pollin(cur.fd, left)
      if inst ~= cur then return nil, "closed" end
      if not ok then return nil, pm end
      d, m = readsome(cur.fd)
      if d == nil and m == nil then return "" end -- (nothing after all: again)
    end
    if d and inst == cur then dispatch(d) end
    return d, m
  end

  -- One reader and one dispatch at a time (the order of events is the
  -- kernel's; a dispatch may wait, to watch a new directory); the other
  -- waiters are woken after.
  local function pump(deadline, nowait)
    local cur = inst
    cur.reading = true
    local ok, data, msg = pcall(pump_read, cur, deadline, nowait)
    cur.reading = false
    if cur.waiting > 0 then cur.cond:broadcast() end
    if not ok then error(data, 0) end
    return data, msg
  end

  local function new_instance()
    local fd, msg, err = init()
    if not fd then return nil, msg, err end
    inst = { fd = fd, bywd = {}, watchers = setmetatable({}, { __mode = "k" }), nwatchers = 0,
      reading = false, waiting = 0, mu = fio.mutex(), cond = fio.condition() }
    return inst
  end

  -- fio.watch(path [, opts]) -> Watcher | nil, msg, errno
  function fio.watch(path, opts)
    if type(path) ~= "string" then argerror(1, "watch", "string expected, got " .. type(path)) end
    checkopts(opts, 2, "watch", WATCH_OPTS)
    opts = opts or {}
    local want = {}
    if opts.kinds == nil then
      for k in pairs(KINDS) do want[k] = true end
    else
      if type(opts.kinds) ~= "table" then argerror(2, "watch", "kinds must be a table of names") end
      for _, k in ipairs(opts.kinds) do
        if not KINDS[k] then argerror(2, "watch", "unknown kind '" .. tostring(k) .. "'") end
        want[k] = true
      end
    end
    if not inst then
      local ok, msg, err = new_instance()
      if not ok then return nil, msg, err end
    end
    local w = setmetatable({ q = {}, first = 1, last = 0, wds = {}, base = {}, want = want,
      recursive = opts.recursive and true or false, root = path }, Watcher)
    local ok, msg, err = watch_one(w, path, opts.links ~= false)
    if not ok then
      if inst.nwatchers == 0 then
        fdclose(inst.fd)
        inst = nil
      end
      return nil, msg, err
    end
    inst.watchers[w] = true
    inst.nwatchers = inst.nwatchers + 1
    if w.recursive then
      local st = fio.stat(path)
      if st and st.type == "directory" then watch_below(w, path, false) end
    end
    return w
  end

  -- w:next([timeout]) -> event | nil, "timeout" | nil, "closed"
  function Watcher:next(timeout)
    if timeout ~= nil and type(timeout) ~= "number" then
      argerror(1, "next", "timeout must be a number of seconds")
    end
    local deadline -- (taken once there is nothing to hand out)
    while true do
      if self.closed then return nil, "closed" end
      if self.first <= self.last then
        local ev = self.q[self.first]
        self.q[self.first] = nil
        self.first = self.first + 1
        return ev
      end
      if not inst then return nil, "closed" end
      if not inst.reading and pump(nil, true) then -- (what it holds already)
        goto continue
      end
      if timeout and not deadline then deadline = fio.now() + timeout end
      if deadline and fio.now() >= deadline then return nil, "timeout" end
      if inst.reading then
        local cur = inst
        cur.mu:lock()
        local left = deadline and deadline - fio.now()
        local ok, err = true, nil
        if left == nil or left > 0 then
          cur.waiting = cur.waiting + 1
          -- (a cancel raises with the mutex held again: let it go first)
          ok, err = pcall(cur.cond.wait, cur.cond, cur.mu, left)
          cur.waiting = cur.waiting - 1
        end
        cur.mu:unlock()
        if not ok then error(err, 0) end
      else
        local got, msg = pump(deadline)
        if not got and msg ~= "timeout" and self.first > self.last then
          if self.closed or not inst then return nil, "closed" end
          return nil, msg
        end
      end
      ::continue::
    end
  end

  -- for ev in w:events() do ... end
  function Watcher:events()
    return function() return self:next() end
  end

  -- w:close(): its watches removed (when no other Watcher shares them);
  -- the instance closed with the last Watcher. Waits in next() end.
  function Watcher:close()
    if self.closed or not inst then
      self.closed = true
      return
    end
    self.closed = true
    self.q, self.first, self.last = {}, 1, 0
    for wd in pairs(self.wds) do
      local m = inst.bywd[wd]
      if m then
        m[self] = nil
        if next(m) == nil then
          inst.bywd[wd] = nil
          rm(inst.fd, wd)
        end
      end
    end
    self.wds, self.base = {}, {}
    inst.watchers[self] = nil
    inst.nwatchers = inst.nwatchers - 1
    if inst.nwatchers == 0 then
      local cur = inst
      inst = nil
      fdclose(cur.fd) -- (a read in flight ends: EBADF)
      cur.cond:broadcast()
    end
  end
  Watcher.__close = Watcher.close
  Watcher.__gc = Watcher.close

  function Watcher:__tostring()
    return "fiberio.Watcher (" .. self.root .. ")"
  end
end

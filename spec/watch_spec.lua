-- fio.watch (issue 17): inotify events on files and trees, recursive
-- watches, moves, overflow, cancel and timeout, no fd left.
local helper = require "helper"
if helper.backend_gate(describe, it, pending) then return end
local fio = helper.fio
local pack = helper.pack
local shq = helper.shquote
local sh = helper.sh_ok
local put = helper.put

-- The events of w until none comes for `quiet` seconds.
local function drain(w, quiet)
  local t = {}
  while true do
    local ev = w:next(quiet or 0.2)
    if not ev then break end
    t[#t + 1] = ev
  end
  return t
end

local function kinds_of(evs, path)
  local t = {}
  for _, ev in ipairs(evs) do
    if not path or ev.path == path then t[#t + 1] = ev.kind end
  end
  return table.concat(t, " ")
end

describe("fio.watch", function()
  local dir
  before_each(function() dir = helper.mktempdir("watch") end)
  after_each(function() helper.rmtree(dir) end)

  it("reports each kind on a directory's entries, with path, name and dir", function()
    local w = assert(fio.watch(dir))
    put(dir .. "/f", "x")              -- create, modify, close_write
    sh("chmod 600 " .. shq(dir .. "/f")) -- attrib
    sh("mkdir " .. shq(dir .. "/d"))
    sh("mv " .. shq(dir .. "/f") .. " " .. shq(dir .. "/g"))
    sh("rm " .. shq(dir .. "/g") .. " && rmdir " .. shq(dir .. "/d"))
    local evs = drain(w)
    w:close()
    local got = {}
    for _, ev in ipairs(evs) do got[#got + 1] = ev.kind .. " " .. ev.name .. (ev.dir and "/" or "") end
    assert.same({ "create f", "modify f", "close_write f", "attrib f", "create d/", "move_from f",
      "move_to g", "delete g", "delete d/" }, got)
    assert.equal(dir .. "/f", evs[1].path)
    assert.is_number(evs[6].cookie)
    assert.equal(evs[6].cookie, evs[7].cookie)
  end)

  it("reports modify, attrib, close_write, move_self and delete_self on a watched file", function()
    put(dir .. "/f", "x")
    local w = assert(fio.watch(dir .. "/f"))
    local f = io.open(dir .. "/f", "a")
    f:write("more")
    f:close()
    sh("touch " .. shq(dir .. "/f"))
    sh("mv " .. shq(dir .. "/f") .. " " .. shq(dir .. "/g"))
    sh("rm " .. shq(dir .. "/g"))
    local evs = drain(w)
    w:close()
    assert.equal("modify close_write attrib close_write move_self attrib delete_self", kinds_of(evs))
    for _, ev in ipairs(evs) do assert.equal(dir .. "/f", ev.path) end
  end)

  it("kinds = {...} keeps only those", function()
    local w = assert(fio.watch(dir, { kinds = { "create", "delete" } }))
    put(dir .. "/f", "x")
    os.remove(dir .. "/f")
    assert.equal("create delete", kinds_of(drain(w)))
    w:close()
  end)

  it("next(timeout) -> nil, 'timeout'; a cancel of a waiting next ends it; usable in select", function()
    local w = assert(fio.watch(dir))
    local t0 = fio.now()
    assert.same(pack(nil, "timeout"), pack(w:next(0.05)))
    assert.is_true(fio.now() - t0 >= 0.04)
    assert.same(pack(nil, "timeout"), pack(fio.timeout(0.05, w.next, w)))
    fio.run(function()
      local a = fio.async(w.next, w)
      local b = fio.async(fio.sleep, 0.05)
      assert.equal(2, (fio.select(a, b)))
      a:cancel()
      local ok, v = pcall(a.await, a)
      assert.is_true(not ok or v == nil) -- (canceled: no event)
      -- the next one still works
      local c = fio.async(w.next, w)
      fio.sleep(0.01)
      put(dir .. "/late", "x")
      assert.equal("create", c:await().kind)
    end)
    w:close()
  end)

  it("two Watchers of one directory both get its events; waiting together", function()
    local w1 = assert(fio.watch(dir))
    local w2 = assert(fio.watch(dir, { kinds = { "create" } }))
    local got = fio.run(function()
      local a = fio.async(function() return w1:next().kind end)
      local b = fio.async(function() return w2:next().kind end)
      fio.sleep(0.02)
      put(dir .. "/f", "x")
      return a:await() .. "," .. b:await()
    end)
    assert.equal("create,create", got)
    w2:close()
    os.remove(dir .. "/f")
    local evs = drain(w1)
    assert.equal("delete", kinds_of(evs, dir .. "/f"):match("delete"))
    w1:close()
  end)

  it("recursive: a burst of new directories 5 levels deep, every file created reported", function()
    local w = assert(fio.watch(dir, { recursive = true, kinds = { "create" } }))
    local want = {}
    sh("cd " .. shq(dir) .. " && for i in 1 2 3 4 5 6 7 8; do mkdir -p a$i/b/c/d/e && for j in 1 2 3; do"
      .. " : > a$i/b/c/d/e/f$j; : > a$i/b/g$j; done; done")
    for l in io.popen("find " .. shq(dir) .. " -mindepth 1"):lines() do want[l] = true end
    local got = {}
    for _, ev in ipairs(drain(w, 0.3)) do got[ev.path] = true end
    w:close()
    assert.same(want, got)
  end)

  it("recursive: moves within the tree pair by cookie; a move out is a move_from alone", function()
    sh("mkdir -p " .. shq(dir .. "/t/a") .. " " .. shq(dir .. "/t/b") .. " " .. shq(dir .. "/out"))
    put(dir .. "/t/a/f", "x")
    put(dir .. "/t/a/g", "x")
    local w = assert(fio.watch(dir .. "/t", { recursive = true, kinds = { "move_from", "move_to" } }))
    sh("mv " .. shq(dir .. "/t/a/f") .. " " .. shq(dir .. "/t/b/f2"))
    sh("mv " .. shq(dir .. "/t/a/g") .. " " .. shq(dir .. "/out/g"))
    local evs = drain(w)
    w:close()
    assert.equal(3, #evs)
    assert.same({ "move_from", dir .. "/t/a/f" }, { evs[1].kind, evs[1].path })
    assert.same({ "move_to", dir .. "/t/b/f2" }, { evs[2].kind, evs[2].path })
    assert.equal(evs[1].cookie, evs[2].cookie)
    assert.same({ "move_from", dir .. "/t/a/g" }, { evs[3].kind, evs[3].path })
  end)

  it("an overflow of the kernel's queue is reported, never dropped silently", function()
    local max = tonumber(io.open("/proc/sys/fs/inotify/max_queued_events"):read("l"))
    if max > 20000 then pending("max_queued_events is " .. max .. ": too many files to make") return end
    local w = assert(fio.watch(dir, { kinds = { "create" } }))
    sh("cd " .. shq(dir) .. " && seq 1 " .. (max + 500) .. " | xargs touch")
    local overflow, n = false, 0
    for _, ev in ipairs(drain(w)) do
      if ev.kind == "overflow" then overflow = true else n = n + 1 end
    end
    w:close()
    assert.is_true(overflow)
    assert.is_true(n <= max)
  end)

  it("a missing path is nil, 'path: message', errno; bad options raise", function()
    assert.same(pack(nil, dir .. "/no: No such file or directory", 2), pack(fio.watch(dir .. "/no")))
    assert.has_error(function() fio.watch(1) end)
    assert.has_error(function() fio.watch(dir, { kinds = { "nope" } }) end)
    assert.has_error(function() fio.watch(dir, { depth = 1 }) end)
  end)

  it("close leaves no fd, and a closed Watcher says so", function()
    helper.warm()
    local before = helper.open_fds()
    for _ = 1, 20 do
      local w = assert(fio.watch(dir, { recursive = true }))
      put(dir .. "/f", "x")
      assert(w:next(1))
      w:close()
      assert.same(pack(nil, "closed"), pack(w:next(0)))
    end
    do
      local guard <close> = assert(fio.watch(dir))
    end
    assert.equal(before, helper.open_fds())
  end)
end)

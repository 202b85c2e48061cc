-- onchange.lua — run a command whenever something below a directory
-- changes (as `entr` does): rebuild on save, rerun tests, sync.
--
--   lua5.4 examples/onchange.lua [-q MS] DIR -- CMD [ARG...]
--
-- Watches DIR and everything below it (fio.watch{recursive = true}: new
-- directories are watched as they appear). A burst of changes is one run:
-- CMD starts once nothing changed for 100 ms (-q MS to change it). A change
-- while CMD still runs stops that run (SIGTERM, then SIGKILL after a
-- second) and starts a new one after the next quiet period. CMD runs
-- without a shell, with this process's stdio; each run is announced on
-- stderr as "onchange: run N". Ctrl-C (or SIGTERM) stops the run in
-- progress and exits 130 (143).
local fio = require "fiberio"

local PROG = "onchange"

local USAGE, ABOUT = "[-q MS] DIR -- CMD [ARG...]",
  "  run CMD whenever something below DIR changes, once per burst of changes\n" ..
  "  (MS milliseconds quiet, default 100); a run still going is stopped first"
local cli = dofile((arg[0]:match("^(.*)/") or ".") .. "/cli.lua")
cli.standard_options(PROG, USAGE, ABOUT, arg)

local usage = cli.usage(PROG, USAGE)

local quiet, dir = 0.1, nil
local i = 1
while arg[i] and arg[i] ~= "--" do
  if arg[i] == "-q" then
    local ms = tonumber(arg[i + 1] or "")
    if not ms or ms < 0 then usage("-q needs milliseconds") end
    quiet = ms / 1000
    i = i + 1
  elseif dir then usage("one DIR only")
  else dir = arg[i] end
  i = i + 1
end
if not dir then usage("DIR expected") end
if arg[i] ~= "--" or not arg[i + 1] then usage("-- CMD expected") end
local cmd = table.move(arg, i + 1, #arg, 1, {})

local running -- the Process of the run in progress
local runner  -- the fiber waiting for it

-- Stop the run in progress, if any: TERM, KILL after a second; reaped.
local function stop_run()
  local p, r = running, runner
  if not p then return end
  p:kill("TERM")
  if not fio.timeout(1, r.await, r) then
    p:kill("KILL")
    r:await()
  end
end

local function main()
  local w, msg = fio.watch(dir, { recursive = true })
  if not w then
    io.stderr:write(PROG, ": ", msg, "\n")
    return 1
  end
  local runs = 0
  while true do
    local ev, err = w:next()
    if not ev then
      io.stderr:write(PROG, ": ", tostring(err), "\n")
      return 1
    end
    -- the rest of the burst: until quiet
    while w:next(quiet) do end
    stop_run() -- (a change during a run: that run is over)
    runs = runs + 1
    io.stderr:write(PROG, ": run ", runs, "\n")
    local p, smsg = fio.spawn(cmd)
    if not p then
      io.stderr:write(PROG, ": ", smsg, "\n")
    else
      running = p
      runner = fio.async(function()
        p:wait()
        p:close()
        if running == p then running, runner = nil, nil end
      end)
    end
  end
end

local function on_signals(body)
  local sigs = { fio.signal("INT"), fio.signal("TERM") }
  return fio.run(function()
    local m = fio.async(body)
    local a = fio.async(function() return sigs[1]:wait() end)
    local b = fio.async(function() return sigs[2]:wait() end)
    local which, r = fio.select(m, a, b)
    a:cancel(); b:cancel()
    if which == 1 then return r end
    m:cancel()
    fio.shield(stop_run)
    return which == 2 and 130 or 143
  end)
end

os.exit(on_signals(main))

-- One pass over N files of 4 KiB (DIR/0 .. DIR/N-1, bench/mkfiles.lua),
-- the whole of a small tool's life: bench/oneshot.sh times this process
-- from fork to exit against bench/readfiles.c doing the same.
--
--   lua5.4 bench/readonce.lua DIR N [fibers|loop|io]
--     fibers  (default) fio.run with 64 fibers, each fio.readfile of its
--             share of the files
--     loop    fio.readfile of each file, one after another, from the main
--             chunk
--     io      io.open, f:read("a"), f:close() of each, one after another
-- Exits non-zero unless it read N * 4096 bytes.
local dir, n, how = arg[1], math.tointeger(tonumber(arg[2] or "")), arg[3] or "fibers"
assert(dir and n, "usage: lua5.4 bench/readonce.lua DIR N [fibers|loop|io]")
local total = 0
if how == "io" then
  for i = 0, n - 1 do
    local f = assert(io.open(dir .. "/" .. i, "rb"))
    total = total + #f:read("a")
    f:close()
  end
else
  local fio = require "fiberio"
  if how == "loop" then
    for i = 0, n - 1 do total = total + #assert(fio.readfile(dir .. "/" .. i)) end
  else
    assert(how == "fibers", "unknown way " .. how)
    fio.run(function()
      for k = 0, 63 do
        fio.async(function()
          for i = k, n - 1, 64 do
            -- (read first: `total + f()` would add to the total before f
            -- suspended, and lose what the other fibers added meanwhile)
            local s = assert(fio.readfile(dir .. "/" .. i))
            total = total + #s
          end
        end)
      end
    end)
  end
end
if total ~= n * 4096 then
  io.stderr:write(("readonce: read %d bytes, expected %d\n"):format(total, n * 4096))
  os.exit(1)
end

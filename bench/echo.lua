-- Echo servers for bench/net.sh (issue 18), the same server three ways:
--
--   lua5.4 bench/echo.lua fiberio|luv|cqueues
--
-- Listens on 127.0.0.1 (any free port, printed as "port N" on stdout),
-- and sends back whatever each connection sends, until killed.
local variant = arg[1]

if variant == "fiberio" then
  local fio = require "fiberio"
  fio.run(function()
    local srv = assert(fio.listen("127.0.0.1", 0))
    local _, port = srv:getsockname()
    io.stdout:write("port ", port, "\n")
    io.stdout:flush()
    while true do
      local c = assert(srv:accept())
      c:setoption("nodelay", true)
      fio.async(function()
        while true do
          local d = c:recv()
          if not d or d == "" or not c:send(d) then break end
        end
        c:close()
      end)
    end
  end)
elseif variant == "luv" then
  local uv = require "luv"
  local srv = uv.new_tcp()
  assert(srv:bind("127.0.0.1", 0))
  assert(srv:listen(1024, function(err)
    assert(not err, err)
    local c = uv.new_tcp()
    srv:accept(c)
    c:nodelay(true)
    c:read_start(function(rerr, data)
      if rerr or not data then
        c:close()
      else
        c:write(data)
      end
    end)
  end))
  io.stdout:write("port ", srv:getsockname().port, "\n")
  io.stdout:flush()
  uv.run()
elseif variant == "cqueues" then
  local cqueues = require "cqueues"
  local socket = require "cqueues.socket"
  local cq = cqueues.new()
  local srv = socket.listen { host = "127.0.0.1", port = 0, reuseaddr = true }
  srv:listen() -- (bind now, for the port)
  local _, _, port = srv:localname()
  io.stdout:write("port ", port, "\n")
  io.stdout:flush()
  cq:wrap(function()
    for c in srv:clients() do
      c:setmode("bn", "bn") -- (binary, no buffering on write)
      cq:wrap(function()
        pcall(function() -- (a reset raises)
          while true do
            local d = c:read(-65536) -- (what is there, up to 64 KiB)
            if not d then break end
            c:write(d)
          end
        end)
        c:close()
      end)
    end
  end)
  assert(cq:loop())
else
  io.stderr:write("usage: lua5.4 bench/echo.lua fiberio|luv|cqueues\n")
  os.exit(2)
end

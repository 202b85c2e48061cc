-- fiberio.socket — fio.resolve, fio.connect, fio.listen, fio.udp and
-- fio.socketpair, on the Socket and Server handles of csrc/lib/socket.c
-- (which hold every method: this file only chooses addresses).
--
-- A host is a name ("localhost", resolved on the pool), a numeric address
-- ("127.0.0.1", "::1", "[::1]": never resolved), or a Unix socket: a path
-- (it has a "/") or an abstract name ("@name"), which takes no port.
--
-- This file returns a function that init.lua calls with the module table.
local core = require "fiberio.core"
local check = require "fiberio.check"

local argerror, checkopts = check.argerror, check.opts
local resolve, connect, listen, dgram = core._resolve, core._connect, core._listen, core._dgram

local function is_unix(host)
  return host:byte(1) == 64 --[[@]] or host:find("/", 1, true) ~= nil
end

local FAMILIES = { inet = true, inet6 = true }

local function checkhost(host, n, fname)
  if type(host) ~= "string" then
    argerror(n, fname, "string expected, got " .. (host == nil and "no value" or type(host)), 4)
  end
end

local function checkport(port, n, fname)
  if math.type(port) ~= "integer" or port < 0 or port > 65535 then
    argerror(n, fname, "port must be an integer in 0..65535, got " .. tostring(port), 4)
  end
end

local function checkfamily(family, n, fname, unix)
  if family ~= nil and not FAMILIES[family] and not (unix and family == "unix") then
    argerror(n, fname, "family must be \"inet\", \"inet6\"" .. (unix and " or \"unix\"" or ""), 4)
  end
end

return function(fio)
  local ENOENT = fio.errno.ENOENT

  -- fio.resolve(host [, opts]) -> { {family = "inet"|"inet6", host =
  -- "numeric"}, ... } | nil, "host: msg", errno. opts.family: only those.
  local RESOLVE_OPTS = { family = true }
  function fio.resolve(host, opts)
    checkhost(host, 1, "resolve")
    checkopts(opts, 2, "resolve", RESOLVE_OPTS)
    local family = opts and opts.family
    checkfamily(family, 2, "resolve")
    local list, msg, err = resolve(host, family)
    if list and #list == 0 then return nil, host .. ": no address", ENOENT end
    return list, msg, err
  end

  -- fio.connect(host, port [, opts]) -> Socket | nil, "host:port: msg",
  -- errno. Each address of a name is tried in turn, until one connects.
  -- opts: timeout (seconds, for each attempt, and the Socket's timeout
  -- after: settimeout), family, nodelay.
  local CONNECT_OPTS = { timeout = true, family = true, nodelay = true }
  function fio.connect(host, port, opts)
    checkhost(host, 1, "connect")
    if is_unix(host) and type(port) == "table" and opts == nil then port, opts = nil, port end
    checkopts(opts, 3, "connect", CONNECT_OPTS)
    opts = opts or {}
    check.timeout(opts.timeout, 3, "connect")
    checkfamily(opts.family, 3, "connect")
    local s, msg, err
    if is_unix(host) then
      s, msg, err = connect(host, nil, opts.timeout)
    else
      checkport(port, 2, "connect")
      local addrs
      addrs, msg, err = fio.resolve(host, opts.family and { family = opts.family })
      if not addrs then return nil, msg, err end
      for _, a in ipairs(addrs) do
        s, msg, err = connect(a.host, port, opts.timeout)
        if s then break end
      end
      if not s and #addrs > 1 then msg = host .. " (" .. msg .. ")" end
    end
    if not s then return nil, msg, err end
    if opts.timeout then s:settimeout(opts.timeout) end
    if opts.nodelay then s:setoption("nodelay", true) end
    return s
  end

  -- fio.listen([host,] port [, opts]) -> Server | nil, msg, errno. host nil
  -- or "*": every address, IPv6 and IPv4 (IPv4 alone where there is no
  -- IPv6). opts: backlog, reuseport, v6only, family.
  local LISTEN_OPTS = { backlog = true, reuseport = true, v6only = true, family = true }
  function fio.listen(host, port, opts)
    if math.type(host) == "integer" then host, port, opts = nil, host, port end
    if host ~= nil then checkhost(host, 1, "listen") end
    if host and is_unix(host) and type(port) == "table" and opts == nil then
      port, opts = nil, port
    end
    checkopts(opts, 3, "listen", LISTEN_OPTS)
    opts = opts or {}
    checkfamily(opts.family, 3, "listen")
    if opts.backlog ~= nil and math.type(opts.backlog) ~= "integer" then
      argerror(3, "listen", "backlog must be an integer")
    end
    if host and is_unix(host) then return listen(host, nil, opts.backlog) end
    checkport(port, 2, "listen")
    if host == nil or host == "*" then
      if opts.family ~= "inet" then
        local srv, msg, err = listen("::", port, opts.backlog, opts.reuseport,
          opts.v6only or opts.family == "inet6")
        if srv or opts.family == "inet6" or err ~= fio.errno.EAFNOSUPPORT then
          return srv, msg, err
        end
      end
      return listen("0.0.0.0", port, opts.backlog, opts.reuseport)
    end
    local addrs, msg, err = fio.resolve(host, opts.family and { family = opts.family })
    if not addrs then return nil, msg, err end
    return listen(addrs[1].host, port, opts.backlog, opts.reuseport, opts.v6only)
  end

  -- fio.udp([opts]) -> Socket (datagrams) | nil, msg, errno. opts: host and
  -- port to bind to (a Unix path or "@name" for a Unix datagram socket),
  -- family (of an unbound socket: "inet" by default, "inet6", "unix").
  local UDP_OPTS = { host = true, port = true, family = true }
  function fio.udp(opts)
    checkopts(opts, 1, "udp", UDP_OPTS)
    opts = opts or {}
    checkfamily(opts.family, 1, "udp", true)
    local host, port = opts.host, opts.port
    if host == nil and port == nil then return dgram(opts.family or "inet") end
    if host == nil then host = opts.family == "inet6" and "::" or "0.0.0.0" end
    if type(host) ~= "string" then argerror(1, "udp", "host must be a string") end
    if is_unix(host) then return dgram("unix", host) end
    checkport(port or 0, 1, "udp")
    local addrs, msg, err = fio.resolve(host, opts.family and { family = opts.family })
    if not addrs then return nil, msg, err end
    return dgram(addrs[1].family, addrs[1].host, port or 0)
  end

  -- fio.socketpair([type]) -> Socket, Socket: two connected Unix sockets,
  -- "stream" (default) or "dgram".
  fio.socketpair = core._socketpair
end

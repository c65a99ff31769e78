-- wrk script: auth subrequests as nginx's auth_request sends them, one listener address per
-- request, cycling over benches/load/ips.txt (ADDRESS COUNTRY LAT LON).
--
--   wrk -s authz.lua URL -- IPS_FILE [gps|ip] [MAX]
--
-- Every request: GET /v1/authz, X-Original-URI of a segment of track QZNW52400010 (licensed in
-- DE, AT, CH, LI), X-Forwarded-For with the address. With "gps", also a fresh Geo-Hint at a
-- point in the address's country (regiongate then locates the point in the polygons).
-- Requests are built once per thread in init(), so wrk's Lua costs nothing per request.
-- MAX (optional): each thread stops after MAX responses and says so on stderr
-- (benches/load/callgrind.sh counts instructions over a fixed number of requests); without it
-- no Lua runs per response.

local requests = {}
local n = 0
local i = 0

function init(args)
  local file = args[1] or "ips.txt"
  local gps = args[2] == "gps"
  local max = tonumber(args[3] or "")
  local now = os.time()
  for line in io.lines(file) do
    local ip, _, lat, lon = line:match("^(%S+)%s+(%S+)%s+(%S+)%s+(%S+)")
    if ip then
      local headers = {
        ["X-Original-URI"] = "/audio/QZNW52400010/seg-1.mp4",
        ["X-Original-Method"] = "GET",
        ["X-Forwarded-For"] = ip,
      }
      if gps then
        headers["Geo-Hint"] = string.format("gps=%s,%s; acc=25; ts=%d", lat, lon, now)
      end
      n = n + 1
      requests[n] = wrk.format("GET", "/v1/authz", headers)
    end
  end
  if n == 0 then
    error("no addresses in " .. file)
  end
  -- Threads start at different places in the list.
  i = (id or 0) * 97 % n
  if max then
    -- Defined only here: wrk asks for response() after init() and skips header parsing and
    -- the Lua call per response when it is absent.
    local seen = 0
    function response()
      seen = seen + 1
      if seen == max then
        -- wrk itself runs for its -d duration: the caller waits for this line and sends
        -- SIGINT, on which wrk prints its statistics at once.
        io.stderr:write("authz.lua: done\n")
        io.stderr:flush()
        wrk.thread:stop()
      end
    end
  end
end

function setup(thread)
  thread:set("id", setup_count or 0)
  setup_count = (setup_count or 0) + 1
end

function request()
  i = i % n + 1
  return requests[i]
end

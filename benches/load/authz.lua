-- wrk script: auth subrequests as nginx's auth_request sends them, one listener address per
-- request, cycling over benches/load/ips.txt (ADDRESS COUNTRY LAT LON).
--
--   wrk -s authz.lua URL -- IPS_FILE [gps|wifi|ip|preflight-ip|preflight-gps] [MAX]
--
-- Every request: GET /v1/authz, X-Original-URI of a segment of track QZNW52400010 (licensed in
-- DE, AT, CH, LI), X-Forwarded-For with the address. With "gps", also a fresh Geo-Hint at a
-- point in the address's country (regiongate then locates the point in the polygons). With
-- "wifi", instead a Wifi-Hint of three access points of regions/wifi/aps.csv (the synthetic
-- sample): those of the site in the address's country, or of Vienna where the sample has none
-- (regiongate then parses the list, estimates a position from the access-point database and
-- places its disc, as for a GPS fix).
-- With "preflight-ip" or "preflight-gps", the client's preflight call instead:
-- GET /v1/tracks/QZNW52400010/playability with the same X-Forwarded-For (and, for
-- preflight-gps, the same Geo-Hint), answered 200 with a JSON decision either way.
-- Requests are built once per thread in init(), so wrk's Lua costs nothing per request.
-- MAX (optional): each thread stops after MAX responses and says so on stderr
-- (benches/load/callgrind.sh counts instructions over a fixed number of requests); without it
-- no Lua runs per response.

local requests = {}

-- First access point of each site of regions/wifi/aps.csv (four per site, in this order).
local wifi_site = { AT = 0, DE = 4, CH = 8, FR = 12, IT = 16, MC = 20, US = 24, JP = 28 }

local function wifi_hint(country)
  local first = wifi_site[country] or 0
  local aps = {}
  for k = 0, 2 do
    aps[#aps + 1] = string.format("00:00:5e:00:53:%02x@-%d", first + k, 50 + 8 * k)
  end
  return table.concat(aps, ", ")
end
local n = 0
local i = 0

function init(args)
  local file = args[1] or "ips.txt"
  local mode = args[2] or "ip"
  local preflight = mode:sub(1, 10) == "preflight-"
  if preflight then
    mode = mode:sub(11)
  end
  local gps = mode == "gps"
  local wifi = mode == "wifi"
  local max = tonumber(args[3] or "")
  local now = os.time()
  for line in io.lines(file) do
    local ip, country, lat, lon = line:match("^(%S+)%s+(%S+)%s+(%S+)%s+(%S+)")
    if ip then
      local headers = { ["X-Forwarded-For"] = ip }
      local path = "/v1/tracks/QZNW52400010/playability"
      if not preflight then
        path = "/v1/authz"
        headers["X-Original-URI"] = "/audio/QZNW52400010/seg-1.mp4"
        headers["X-Original-Method"] = "GET"
      end
      if gps then
        headers["Geo-Hint"] = string.format("gps=%s,%s; acc=25; ts=%d", lat, lon, now)
      end
      if wifi then
        headers["Wifi-Hint"] = wifi_hint(country)
      end
      n = n + 1
      requests[n] = wrk.format("GET", path, headers)
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

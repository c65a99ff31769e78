-- wrk script: listeners playing tracks, as a player does: one preflight, then 60 segment
-- requests, over and over (benches/load/played_track.sh).
--
--   wrk -s played_track.lua URL -- TRACK QUERY LISTENER_IP
--
-- Request 0 of each played track: GET /v1/tracks/TRACK/playability; requests 1..60:
-- GET /audio/TRACK/seg-N.mp4, with "?QUERY" when QUERY is not "-" (the grant's query
-- parameters). Every request carries X-Listener: LISTENER_IP (nginx passes it on as the
-- listener's address). Requests are built once per thread in init().

local requests = {}
local i = 0

function init(args)
  local track, query, ip = args[1], args[2], args[3]
  local headers = { ["X-Listener"] = ip }
  requests[1] = wrk.format("GET", "/v1/tracks/" .. track .. "/playability", headers)
  for n = 0, 59 do
    local path = "/audio/" .. track .. "/seg-" .. n .. ".mp4"
    if query ~= "-" then
      path = path .. "?" .. query
    end
    requests[#requests + 1] = wrk.format("GET", path, headers)
  end
end

function request()
  i = i % #requests + 1
  return requests[i]
end

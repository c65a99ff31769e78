-- wrk script for benches/load/reload_swap.py: auth subrequests at a steady rate while the data
-- directory is swapped under the server.
--
--   wrk -s reload_swap.lua URL -- IPS_FILE TRACK DELAY_MS
--
-- Every request: GET /v1/authz for a segment of TRACK with X-Forwarded-For of a listener in DE
-- (from IPS_FILE: ADDRESS COUNTRY LAT LON). Each connection waits DELAY_MS between requests,
-- so the rate is about connections * 1000 / DELAY_MS per second whatever the latency.
-- Every answer is tallied as "status decision version"; done() prints the tally, one line per
-- kind of answer, for the driver to check that each is one of the two expected answers.

local requests = {}
local n = 0
local i = 0
local pause = 0
tally = {}

function init(args)
  local file, track = args[1], args[2]
  pause = tonumber(args[3]) or 0
  for line in io.lines(file) do
    local ip, cc = line:match("^(%S+)%s+(%S+)")
    if ip and cc == "DE" then
      n = n + 1
      requests[n] = wrk.format("GET", "/v1/authz", {
        ["X-Original-URI"] = "/audio/" .. track .. "/seg-1.mp4",
        ["X-Original-Method"] = "GET",
        ["X-Forwarded-For"] = ip,
      })
    end
  end
  if n == 0 then
    error("no DE addresses in " .. file)
  end
  i = (id or 0) * 37 % n
end

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function delay()
  return pause
end

function request()
  i = i % n + 1
  return requests[i]
end

function response(status, headers, body)
  local decision, version = "-", "-"
  for k, v in pairs(headers) do
    local key = string.lower(k)
    if key == "x-regiongate-decision" then
      decision = v
    elseif key == "x-regiongate-version" then
      version = v
    end
  end
  local key = status .. " " .. decision .. " " .. version
  tally[key] = (tally[key] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    local t = thread:get("tally")
    for k, v in pairs(t or {}) do
      total[k] = (total[k] or 0) + v
    end
  end
  for k, v in pairs(total) do
    io.write(string.format("TALLY %s %d\n", k, v))
  end
  for _, p in ipairs({ 50, 90, 99, 99.9 }) do
    io.write(string.format("LATENCY_US %s %d\n", p, latency:percentile(p)))
  end
  io.write(string.format("LATENCY_US max %d\n", latency.max))
end

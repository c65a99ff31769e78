-- wrk script of benches/soak/soak.sh: valid traffic on every front door, cycling over the
-- request list soak.py prepare writes (one request per line: "METHOD PATH", then
-- tab-separated "Header: value" fields, optionally a last "BODY=..." field).
--
--   SOAK_WRK_OUT=OUT_JSON wrk -s mix.lua URL -- REQUESTS_FILE
--
-- Counts the answers by status per thread and writes, at the end, a JSON summary to OUT_JSON:
-- requests, requests/s, latency percentiles, statuses, socket errors.

local requests = {}
local n = 0
local i = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    local fields = {}
    for f in line:gmatch("[^\t]+") do
      table.insert(fields, f)
    end
    local method, path = fields[1]:match("^(%S+) (%S+)$")
    local headers, body = {}, nil
    for k = 2, #fields do
      local b = fields[k]:match("^BODY=(.*)$")
      if b then
        body = b
      else
        local name, value = fields[k]:match("^([^:]+): (.*)$")
        headers[name] = value
      end
    end
    n = n + 1
    requests[n] = wrk.format(method, path, headers, body)
  end
  i = (id or 0) * 131 % n
end

function request()
  i = i % n + 1
  return requests[i]
end

function response(status, headers, body)
  local k = "s" .. status
  _G[k] = (_G[k] or 0) + 1
end

function done(summary, latency, requests)
  local statuses = {}
  for _, t in ipairs(threads) do
    for s = 100, 599 do
      local c = t:get("s" .. s)
      if c then
        statuses[tostring(s)] = (statuses[tostring(s)] or 0) + c
      end
    end
  end
  local parts = {}
  for s, c in pairs(statuses) do
    table.insert(parts, string.format('"%s": %d', s, c))
  end
  local e = summary.errors
  local f = assert(io.open(os.getenv("SOAK_WRK_OUT") or "wrk.json", "w"))
  f:write(string.format(
    '{"requests": %d, "duration_s": %.3f, "rps": %.1f, "p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, ' ..
    '"statuses": {%s}, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.status, e.timeout))
  f:close()
end

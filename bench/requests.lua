-- wrk script: cycle through the requests listed in a file, one per line:
--   METHOD PATH [JSON BODY]
-- and print a JSON summary (requests, duration, errors, latency) on the last line.
-- Usage: wrk -t1 -c1 -d5s -s requests.lua http://host:port -- requests.txt
local reqs = {}
local n = 0
local idx = 0
-- BENCH_AUTHORIZATION (optional): the Authorization header of every request
local authorization = os.getenv("BENCH_AUTHORIZATION")

function init(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    local method, path, body = line:match("^(%S+) (%S+) ?(.*)$")
    local headers = {}
    if authorization ~= nil and authorization ~= "" then
      headers["Authorization"] = authorization
    end
    if body == nil or body == "" then
      body = nil
    else
      headers["Content-Type"] = "application/json"
    end
    n = n + 1
    reqs[n] = wrk.format(method, path, headers, body)
  end
  f:close()
end

function request()
  idx = idx % n + 1
  return reqs[idx]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"lat_min_us":%d,"lat_p50_us":%d,' ..
    '"lat_p99_us":%d,"lat_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency:percentile(50), latency:percentile(99), latency.max))
end

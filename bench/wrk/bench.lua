-- wrk script for the modelgate benchmark.
-- Environment:
--   BENCH_METHOD  GET or POST (default POST)
--   BENCH_PATH    request path (default /v1/chat/completions)
--   BENCH_BODY    request body for POST
--   BENCH_KEY     Bearer key (optional)
--   BENCH_RATE    total requests/s to pace at (0 or unset: closed loop, as fast as possible)
--   BENCH_THREADS wrk's -t, so that each thread takes its share of BENCH_RATE
-- At the end it prints one line `BENCHJSON {...}` with the counts, the errors and the
-- latency percentiles in microseconds.
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk, bench_timespec *ts);
]]
local ts = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
end

local method = os.getenv("BENCH_METHOD") or "POST"
local path = os.getenv("BENCH_PATH") or "/v1/chat/completions"
local body = os.getenv("BENCH_BODY")
local key = os.getenv("BENCH_KEY")
local rate = tonumber(os.getenv("BENCH_RATE") or "0") or 0
local threads = tonumber(os.getenv("BENCH_THREADS") or "1") or 1

-- Built in init(): wrk sets the Host header only then (HTTP/1.1 servers other than hyper
-- reject a request without one).
local req
function init(args)
  local headers = {}
  headers["Host"] = wrk.headers["Host"]
  if key and key ~= "" then headers["Authorization"] = "Bearer " .. key end
  if method == "POST" then headers["Content-Type"] = "application/json" end
  req = wrk.format(method, path, headers, method == "POST" and body or nil)
end

function request()
  return req
end

-- Pacing: every thread hands out send slots `interval` apart on its own clock; a connection
-- that is free asks for the next slot and waits until it (wrk's timers have 1 ms steps, so
-- requests leave in small bursts). A late slot is sent at once.
local interval, next_slot
if rate > 0 then
  interval = 1e6 / (rate / threads)
  function delay()
    local t = now_us()
    if next_slot == nil then next_slot = t end
    local slot = next_slot
    next_slot = next_slot + interval
    local d = (slot - t) / 1000
    if d < 0 then return 0 end
    return d
  end
end

function done(summary, latency, requests)
  local pcts = {}
  local points = {1, 5, 10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 95, 97, 98, 99, 99.5, 99.9, 99.99}
  local parts = {}
  for _, p in ipairs(points) do
    table.insert(parts, string.format('"%s": %d', tostring(p), latency:percentile(p)))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "max": %d, "mean": %.2f, "stdev": %.2f, "p": {%s}}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev, table.concat(parts, ", ")))
end

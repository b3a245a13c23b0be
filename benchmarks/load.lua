-- The wrk script of benchmarks/load.py: cycles through pre-made requests, optionally at a fixed
-- rate, and prints one machine-readable result line.
--
--   wrk -t1 -c16 -d10s --latency -s benchmarks/load.lua http://127.0.0.1:8000 -- REQUESTS_FILE [RATE [FIRST]]
--
-- REQUESTS_FILE has one request per line, tab-separated: method, path, body (may be empty), then
-- any number of "Name: value" headers. RATE (requests per second over all connections; 0 or
-- absent: as fast as the server answers) paces the requests on a fixed schedule: request k is
-- sent at start + k / RATE, or at once when that time has passed (wrk2's -R is not in Debian).
-- Use one thread (-t1) with a rate: the schedule is per thread. FIRST (default 0) is the line to
-- start from, so that runs in turn over one file of distinct webhooks never send one twice.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } load_timespec;
int clock_gettime(int clock_id, load_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local clock = ffi.new("load_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local requests = {}
local index = 0
local interval_ms = 0
local next_send_ms = nil

function init(args)
  for line in io.lines(args[1]) do
    local fields = {}
    for field in (line .. "\t"):gmatch("([^\t]*)\t") do
      fields[#fields + 1] = field
    end
    local headers = {}
    for i = 4, #fields do
      local name, value = fields[i]:match("^([^:]+):%s*(.*)$")
      if name then
        headers[name] = value
      end
    end
    local body = nil
    if fields[3] ~= "" then
      body = fields[3]
    end
    requests[#requests + 1] = wrk.format(fields[1], fields[2], headers, body)
  end
  local rate = tonumber(args[2] or "0") or 0
  if rate > 0 then
    interval_ms = 1000 / rate
  end
  index = (tonumber(args[3] or "0") or 0) % #requests
end

function request()
  index = index + 1
  if index > #requests then
    index = 1
  end
  return requests[index]
end

function delay()
  if interval_ms == 0 then
    return 0
  end
  local now = now_ms()
  if next_send_ms == nil then
    next_send_ms = now
  end
  local wait = next_send_ms - now
  next_send_ms = next_send_ms + interval_ms
  if wait < 0 then
    return 0
  end
  return wait
end

function done(summary, latency, _)
  local errors = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, '
      .. '"max_us": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, '
      .. '"status_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, errors.connect, errors.read, errors.write,
    errors.status, errors.timeout
  ))
end

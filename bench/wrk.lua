-- wrk script of the benchmark harness: POSTs pre-generated request bodies (one per line of
-- BENCH_BODIES) round-robin, optionally pausing between a connection's requests (a fixed
-- rate), and prints one "BENCH {json}" line with its figures at the end.
--
-- The pauses are random, exponentially distributed with a mean of BENCH_DELAY_MS: with
-- equal pauses, connections answered together (one Kafka acknowledgement) would send
-- together again, and the load would arrive in bursts instead of as independent users.

local bodies = {}
local next_body = 0
local path = os.getenv("BENCH_PATH")
local headers = {["Content-Type"] = "application/json"}
if (os.getenv("BENCH_AUTH") or "") ~= "" then
  headers["Authorization"] = os.getenv("BENCH_AUTH")
end
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")

function init(args)
  for line in io.lines(os.getenv("BENCH_BODIES")) do
    bodies[#bodies + 1] = line
  end
  next_body = math.random(#bodies)
end

function request()
  next_body = next_body % #bodies + 1
  return wrk.format("POST", path, headers, bodies[next_body])
end

if delay_ms > 0 then
  function delay()
    -- wrk takes whole milliseconds: rounding keeps the mean.
    return math.floor(-delay_ms * math.log(1 - math.random()) + 0.5)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p95_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end

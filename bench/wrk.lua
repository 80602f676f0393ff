-- wrk script of the benchmark harness: POSTs pre-generated request bodies (one per line of
-- BENCH_BODIES) round-robin, optionally pausing between a connection's requests (a fixed
-- rate), and prints one "BENCH {json}" line with its figures at the end.
--
-- The pauses are random, exponentially distributed with a mean of BENCH_DELAY_MS: with
-- equal pauses, connections answered together (one Kafka acknowledgement) would send
-- together again, and the load would arrive in bursts instead of as independent users.
--
-- With BENCH_STAMP set (and one connection per thread, -t = -c), the "@ID@" in a body becomes
-- a unique messageId "<stamp><thread>-<n>", and each thread records the status of each of its
-- requests: a thread's requests and responses alternate, so a response belongs to the last
-- request sent, and a request followed by another without a response got none (an error).

local bodies = {}
local next_body = 0
local path = os.getenv("BENCH_PATH")
local headers = {["Content-Type"] = "application/json"}
if (os.getenv("BENCH_AUTH") or "") ~= "" then
  headers["Authorization"] = os.getenv("BENCH_AUTH")
end
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local stamp = os.getenv("BENCH_STAMP") or ""

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

local threads = {}

if stamp ~= "" then
  -- Per-thread state (each thread runs its own copy of this script).
  sent = 0
  pending = nil
  unacked = {}     -- request numbers not answered 200
  statuses = {}    -- status → count; 0 = no response
  -- thread_id: set by setup() below, in the thread's state

  local function record(n, status)
    statuses[status] = (statuses[status] or 0) + 1
    if status ~= 200 then
      unacked[#unacked + 1] = n
    end
  end

  function setup(thread)
    threads[#threads + 1] = thread
    thread:set("thread_id", #threads)
  end

  function request()
    if pending ~= nil then
      record(pending, 0)
    end
    sent = sent + 1
    pending = sent
    next_body = next_body % #bodies + 1
    local body = bodies[next_body]
    local at = string.find(body, "@ID@", 1, true)
    if at then
      body = string.sub(body, 1, at - 1) .. stamp .. thread_id .. "-" .. sent
        .. string.sub(body, at + 4)
    end
    return wrk.format("POST", path, headers, body)
  end

  function response(status, headers, body)
    if pending ~= nil then
      record(pending, status)
      pending = nil
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local extra = ""
  if stamp ~= "" then
    local counts = {}
    local conns = {}
    for _, thread in ipairs(threads) do
      local unacked = thread:get("unacked")
      local ids = {}
      for _, n in ipairs(unacked) do
        ids[#ids + 1] = tostring(n)
      end
      local last = thread:get("pending")
      if last ~= nil then
        ids[#ids + 1] = tostring(last)  -- in flight when the run ended: not counted
      end
      for status, count in pairs(thread:get("statuses")) do
        counts[status] = (counts[status] or 0) + count
      end
      conns[#conns + 1] = string.format('{"id":%d,"sent":%d,"unacked":[%s]}',
        thread:get("thread_id"), thread:get("sent"), table.concat(ids, ","))
    end
    local parts = {}
    for status, count in pairs(counts) do
      parts[#parts + 1] = string.format('"%d":%d', status, count)
    end
    extra = string.format(',"statuses":{%s},"connections":[%s]',
      table.concat(parts, ","), table.concat(conns, ","))
  end
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p95_us":%d,"p99_us":%d%s}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), extra))
end

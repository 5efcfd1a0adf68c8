-- wrk script for benchmarks/serving.py: POST request bodies read from a file (one JSON body a
-- line), cycled so consecutive requests carry different rows; counts 2xx responses and the
-- rows they answered, and prints them as one JSON line when wrk is done.
--
-- Environment: BENCH_BODIES (the file), BENCH_PATH (URL path), BENCH_ROWS (rows per body),
-- BENCH_AUTH (optional Authorization header value).

local bodies_file = os.getenv("BENCH_BODIES")
local path = os.getenv("BENCH_PATH") or "/"
local rows_per_body = tonumber(os.getenv("BENCH_ROWS") or "1")
local auth = os.getenv("BENCH_AUTH")

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local requests = {}
local index = 0
-- Globals, not locals: done() reads them from each thread with thread:get().
ok = 0
failed = 0
statuses = {}

function init(args)
  local headers = { ["Content-Type"] = "application/json" }
  if auth and auth ~= "" then
    headers["Authorization"] = auth
  end
  for line in io.lines(bodies_file) do
    if #line > 0 then
      table.insert(requests, wrk.format("POST", path, headers, line))
    end
  end
  -- Threads start at different offsets, so they do not send the same rows in lockstep.
  index = math.random(#requests) - 1
end

function request()
  index = index % #requests + 1
  return requests[index]
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  else
    failed = failed + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests_)
  local total_ok, total_failed = 0, 0
  local by_status = {}
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_failed = total_failed + thread:get("failed")
    for code, count in pairs(thread:get("statuses")) do
      by_status[code] = (by_status[code] or 0) + count
    end
  end
  local codes = {}
  for code, count in pairs(by_status) do
    codes[#codes + 1] = string.format('"%d": %d', code, count)
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "ok": %d, "failed": %d, "rows_answered": %d, ' ..
    '"duration_us": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
    '"status_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "mean_us": %.1f, "statuses": {%s}}\n',
    summary.requests, total_ok, total_failed, total_ok * rows_per_body,
    summary.duration, errors.connect, errors.read, errors.write, errors.status,
    errors.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, table.concat(codes, ", ")))
end

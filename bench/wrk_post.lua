-- wrk script of bench/run.py: POST one JSON body; optionally a fresh token per request; JSON summary at the end.
-- Environment: BENCH_BODY_FILE (the body), BENCH_FRESH_TOKEN=1 to replace __TOKEN__ with a unique value per
-- request (scenario B cold: the service's FHIR cache is keyed by token), BENCH_FRESH_PATIENT=1 to replace
-- __PATIENT__ with a unique patient id per request (scenario S: an EHR calls for many patients, so no one patient's
-- audit history grows with the run), BENCH_RESULT_FILE (where done() writes).
local body_file = os.getenv("BENCH_BODY_FILE")
local fresh_token = os.getenv("BENCH_FRESH_TOKEN") == "1"
local fresh_patient = os.getenv("BENCH_FRESH_PATIENT") == "1"
local handle = assert(io.open(body_file, "rb"))
local template = handle:read("*a")
handle:close()

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = template:gsub("__TOKEN__", "bench-warm-token"):gsub("__PATIENT__", "bench-patient")

local next_thread_id = 0
function setup(thread)
  next_thread_id = next_thread_id + 1
  thread:set("thread_id", next_thread_id)
end

local counter = 0
function request()
  if not fresh_token and not fresh_patient then
    return wrk.format()
  end
  counter = counter + 1
  local unique = tostring(thread_id) .. "-" .. tostring(counter)
  local body = template
  if fresh_token then
    body = body:gsub("__TOKEN__", "bench-cold-" .. unique)
  end
  if fresh_patient then
    body = body:gsub("__PATIENT__", "bench-patient-" .. unique)
  end
  return wrk.format(nil, nil, nil, (body:gsub("__TOKEN__", "bench-warm-token")))
end

function done(summary, latency, requests)
  local out = assert(io.open(os.getenv("BENCH_RESULT_FILE"), "w"))
  out:write(string.format(
    '{"requests": %d, "duration_us": %d, "errors_connect": %d, "errors_read": %d, "errors_write": %d, ' ..
    '"errors_status": %d, "errors_timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
  out:close()
end

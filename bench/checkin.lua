-- wrk script of bench/checkin-wrk.sh: POST /v1/agent/checkin, each request
-- the next host's check-in (cycling over the lines of $CHECKIN_BODIES, one
-- JSON body a line, as `sluice-bench-checkin serve` writes them), with
-- $CHECKIN_TOKEN as the bearer token when set. The requests are formatted
-- once, in init(). Prints one `RESULT key=value …` line at the end.

local prepared = {}
local next_one = 0

function init(args)
  local path = os.getenv("CHECKIN_BODIES")
  local token = os.getenv("CHECKIN_TOKEN")
  local headers = { ["Content-Type"] = "application/json" }
  if token and token ~= "" then
    headers["Authorization"] = "Bearer " .. token
  end
  for body in io.lines(path) do
    prepared[#prepared + 1] = wrk.format("POST", "/v1/agent/checkin", headers, body)
  end
  if #prepared == 0 then
    error("no check-in bodies in " .. path)
  end
end

function request()
  next_one = next_one % #prepared + 1
  return prepared[next_one]
end

function done(summary, latency, rates)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d socket_errors=%d status_errors=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status))
end

-- wrk script: POST the body in $BODY_FILE with auth header $AUTH and print
-- one machine-readable RESULT line (requests/s, p99 in ms, non-2xx count).
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Jfrog-Event-Auth"] = os.getenv("AUTH")

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format("RESULT rps=%.1f p99_ms=%.3f p50_ms=%.3f requests=%d non2xx=%d errors=%d\n",
    summary.requests / seconds, latency:percentile(99) / 1000, latency:percentile(50) / 1000,
    summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end

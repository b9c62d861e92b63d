-- wrk script: send `depth` requests back to back per write (HTTP/1.1 pipelining),
-- as TechEmpower's plaintext test does; depth 1 is plain keep-alive. Usage: wrk -s pipeline.lua URL -- 16
local depth = 1
local batch = nil

init = function(args)
  depth = tonumber(args[1]) or 1
  local one = wrk.format(nil, nil, {["Connection"] = "keep-alive"})
  batch = string.rep(one, depth)
end

request = function()
  return batch
end

-- One JSON line at the end for scripts/bench.sh (latency in microseconds; with
-- pipelining, wrk times each batch of `depth` requests).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"rps":%.1f,"p50_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,' ..
    '"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end

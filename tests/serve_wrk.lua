-- tests/serve_wrk.lua — the request mix tests/serve_wrk.sh drives `retnet serve` with:
-- mostly small completions (a few prompts, greedy and seeded sampling), every eighth a
-- GET /health. wrk counts non-2xx answers and socket errors; the script checks both are 0.
local prompts = { "the", "In the", "This License", "you may", "of the" }
local n = 0

request = function()
  n = n + 1
  if n % 8 == 0 then
    return wrk.format("GET", "/health")
  end
  local body = string.format('{"prompt":"%s","max_tokens":%d,"temperature":%s,"seed":%d}',
    prompts[n % #prompts + 1], 2 + n % 5, (n % 2 == 0) and "0" or "0.8", n)
  return wrk.format("POST", "/v1/completions", { ["Content-Type"] = "application/json" }, body)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("wrk: requests %d, non-2xx %d, socket errors connect %d read %d write %d timeout %d\n",
    summary.requests, e.status, e.connect, e.read, e.write, e.timeout))
  io.write(string.format("wrk: latency p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end

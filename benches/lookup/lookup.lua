-- wrk script: GET /products/<PRODUCT>/customers/<id> for random ids of the product, read
-- from the file IDS (one id a line; run.sh writes it from the rows API), bearer TOKEN.
--   IDS=ids.txt TOKEN=... wrk -t2 -c64 -d30s -s lookup.lua http://127.0.0.1:8360
-- (wrk measures closed-loop maximum throughput; bench.py measures latency at a fixed rate.)
local token = os.getenv("TOKEN") or ""
local product = os.getenv("PRODUCT") or "customer_churn_scores"
local ids = {}
for line in io.lines(os.getenv("IDS") or "ids.txt") do
  ids[#ids + 1] = line
end
math.randomseed(os.time())

request = function()
  local id = ids[math.random(1, #ids)]
  return wrk.format("GET", "/products/" .. product .. "/customers/" .. id,
    { ["Authorization"] = "Bearer " .. token })
end

done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format("requests %d, %.1f req/s, p50 %.3f ms, p99 %.3f ms, errors %d\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, errors))
end

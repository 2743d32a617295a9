-- wrk script: durable holds from many distinct buyers.
-- Reads buyer tokens (one per line) from FG_TOKENS; each request uses the next buyer and a fresh
-- Idempotency-Key, so every request is a new hold by a different buyer than the last.
local tokens = {}
local sale = os.getenv("FG_SALE") or "bench"
local sku = os.getenv("FG_SKU") or "bench-sku"
local counter = 0
-- FG_KEY_PREFIX keeps the keys of one run apart from an earlier run's with the same buyers.
local key_prefix = os.getenv("FG_KEY_PREFIX") or "k"
local thread_id = 0
local statuses = {}

function setup(thread)
  thread:set("id", thread_id)
  thread_id = thread_id + 1
end

function init(args)
  for line in io.lines(os.getenv("FG_TOKENS")) do
    tokens[#tokens + 1] = line
  end
  counter = id * 7919
  wrk.method = "POST"
  wrk.body = '{"sku":"' .. sku .. '"}'
  wrk.path = "/v1/sales/" .. sale .. "/holds"
end

function request()
  counter = counter + 1
  local t = tokens[(counter % #tokens) + 1]
  wrk.headers["Authorization"] = "Bearer " .. t
  wrk.headers["Idempotency-Key"] = key_prefix .. id .. "-" .. counter
  wrk.headers["Content-Type"] = "application/json"
  return wrk.format()
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  io.write(string.format("p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end

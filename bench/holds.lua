-- wrk script: durable holds from many distinct buyers.
-- Reads buyer tokens (one per line) from FG_TOKENS; each request uses the next buyer and a fresh
-- Idempotency-Key, so every request is a new hold by a different buyer than the last.
--
-- The request text up to the Idempotency-Key is built once per buyer in init, and each request
-- is a single concatenation. There is no response() hook: with one, wrk hands every answer's
-- headers and body to Lua, which cost more client CPU than the server spent on the request.
-- Answers are counted from the server's own figures instead.
local sale = os.getenv("FG_SALE") or "bench"
local sku = os.getenv("FG_SKU") or "bench-sku"
local counter = 0
-- FG_KEY_PREFIX keeps the keys of one run apart from an earlier run's with the same buyers.
local key_prefix = os.getenv("FG_KEY_PREFIX") or "k"
local thread_id = 0
local heads = {}
local n = 0
local key_head = ""
local tail = ""

function setup(thread)
  thread:set("id", thread_id)
  thread_id = thread_id + 1
end

function init(args)
  local body = '{"sku":"' .. sku .. '"}'
  local host = wrk.headers["Host"] or (wrk.host .. ":" .. wrk.port)
  local start = "POST /v1/sales/" .. sale .. "/holds HTTP/1.1\r\nHost: " .. host ..
    "\r\nContent-Type: application/json\r\nContent-Length: " .. #body .. "\r\nAuthorization: Bearer "
  for line in io.lines(os.getenv("FG_TOKENS")) do
    heads[#heads + 1] = start .. line .. "\r\nIdempotency-Key: "
  end
  n = #heads
  counter = id * 7919
  key_head = key_prefix .. id .. "-"
  tail = "\r\n\r\n" .. body
end

function request()
  counter = counter + 1
  return heads[(counter % n) + 1] .. key_head .. counter .. tail
end

function done(summary, latency, requests)
  io.write(string.format("p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end

-- wrk script: sold-out refusals, one pre-built request.
-- The request a buyer sends for a hold on a sold-out sale (first token of FG_TOKENS, one
-- Idempotency-Key). wrk formats it once and sends the same bytes on every request, exactly as
-- it does for the nginx peer's static GET: the client then costs the same per request in both
-- runs. The server does the same work for this request as for one from a new buyer with a new
-- key (token parsed, key hashed and looked up, body parsed, refused without the writer); a key
-- the writer has seen would go to the writer instead, and this one never has.
local sale = os.getenv("FG_SALE") or "gone"
local sku = os.getenv("FG_SKU") or "gone-sku"
local token = io.lines(os.getenv("FG_TOKENS"))()

wrk.method = "POST"
wrk.path = "/v1/sales/" .. sale .. "/holds"
wrk.body = '{"sku":"' .. sku .. '"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Idempotency-Key"] = (os.getenv("FG_KEY_PREFIX") or "gone") .. "-static"

function done(summary, latency, requests)
  io.write(string.format("p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end

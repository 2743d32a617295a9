-- The usual Redis flash-sale script, as the peer floodgate is measured against (bench/compare).
-- One call is one reserve: the per-buyer check, the stock decrement and the order appended to
-- a stream, atomically (Redis runs a script alone). With appendonly yes and appendfsync always
-- Redis writes and fsyncs the AOF before it answers, so a 1 is as durable as floodgate's 201.
--
-- KEYS[1] the stock counter, KEYS[2] the set of buyers who bought, KEYS[3] the orders stream
-- ARGV[1] the buyer, ARGV[2] the SKU
-- Returns 1 (reserved), 0 (sold out) or -1 (this buyer already bought: limit 1).
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  return -1
end
local left = tonumber(redis.call('GET', KEYS[1]) or '0')
if left <= 0 then
  return 0
end
redis.call('DECR', KEYS[1])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[3], '*', 'buyer', ARGV[1], 'sku', ARGV[2])
return 1

-- Keep one sealed item for its recipient, within the bounds (RedisMailbox.deposit).
-- KEYS[1] items hash, KEYS[2] order zset, KEYS[3] bytes, KEYS[4] expiry zset,
-- KEYS[5] totals hash, KEYS[6] sequence
-- ARGV recipient, item, "SIZE:JSON", size, max_items (-1: none), max_bytes (-1), expires
-- Returns 1 (kept), 0 (kept already), {-1, items} (too many), {-2, bytes} (too large).
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then return 0 end
local count = redis.call('HLEN', KEYS[1])
local max_items = tonumber(ARGV[5])
if max_items >= 0 and count + 1 > max_items then return {-1, count} end
local used = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
local size = tonumber(ARGV[4])
local max_bytes = tonumber(ARGV[6])
if max_bytes >= 0 and used + size > max_bytes then return {-2, used} end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[6]), ARGV[2])
redis.call('INCRBY', KEYS[3], size)
redis.call('ZADD', KEYS[4], ARGV[7], ARGV[1] .. '\n' .. ARGV[2])
redis.call('HINCRBY', KEYS[5], 'items', 1)
redis.call('HINCRBY', KEYS[5], 'bytes', size)
return 1

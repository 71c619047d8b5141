-- Keep one sealed item for its recipient, within the bounds (RedisMailbox.deposit).
-- KEYS[1] items hash, KEYS[2] order zset, KEYS[3] bytes, KEYS[4] expiry zset,
-- KEYS[5] totals hash, KEYS[6] senders hash ("n:SENDER" items, "b:SENDER" bytes),
-- KEYS[7] from hash (item -> sender), KEYS[8] sequence
-- ARGV recipient, item, "SIZE:JSON", size, max_items (-1: none), max_bytes (-1), expires,
-- sender, max_sender_items (-1), max_sender_bytes (-1)
-- Returns 1 (kept), 0 (kept already), {-1, items} (too many), {-2, bytes} (too large),
-- {-3, items} and {-4, bytes}: the same for the sender's share of this mailbox.
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then return 0 end
local count = redis.call('HLEN', KEYS[1])
local max_items = tonumber(ARGV[5])
if max_items >= 0 and count + 1 > max_items then return {-1, count} end
local used = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
local size = tonumber(ARGV[4])
local max_bytes = tonumber(ARGV[6])
if max_bytes >= 0 and used + size > max_bytes then return {-2, used} end
local sender = ARGV[8]
local mine = tonumber(redis.call('HGET', KEYS[6], 'n:' .. sender) or '0') or 0
local max_mine = tonumber(ARGV[9])
if max_mine >= 0 and mine + 1 > max_mine then return {-3, mine} end
local mine_bytes = tonumber(redis.call('HGET', KEYS[6], 'b:' .. sender) or '0') or 0
local max_mine_bytes = tonumber(ARGV[10])
if max_mine_bytes >= 0 and mine_bytes + size > max_mine_bytes then return {-4, mine_bytes} end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[8]), ARGV[2])
redis.call('INCRBY', KEYS[3], size)
redis.call('ZADD', KEYS[4], ARGV[7], ARGV[1] .. '\n' .. ARGV[2])
redis.call('HINCRBY', KEYS[5], 'items', 1)
redis.call('HINCRBY', KEYS[5], 'bytes', size)
redis.call('HINCRBY', KEYS[6], 'n:' .. sender, 1)
redis.call('HINCRBY', KEYS[6], 'b:' .. sender, size)
redis.call('HSET', KEYS[7], ARGV[2], sender)
return 1

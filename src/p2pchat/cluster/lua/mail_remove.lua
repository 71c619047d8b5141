-- Drop items kept for one recipient (RedisMailbox.remove and expire).
-- KEYS[1] items hash, KEYS[2] order zset, KEYS[3] bytes, KEYS[4] expiry zset,
-- KEYS[5] totals hash, KEYS[6] senders hash, KEYS[7] from hash;
-- ARGV recipient, item, item...
-- Returns how many were kept.
local function unshare(item, size)
  local sender = redis.call('HGET', KEYS[7], item)
  if not sender then return end  -- kept before shares were counted
  redis.call('HDEL', KEYS[7], item)
  if redis.call('HINCRBY', KEYS[6], 'n:' .. sender, -1) <= 0 then
    redis.call('HDEL', KEYS[6], 'n:' .. sender, 'b:' .. sender)
  else
    redis.call('HINCRBY', KEYS[6], 'b:' .. sender, -size)
  end
end
local removed, freed = 0, 0
for i = 2, #ARGV do
  local value = redis.call('HGET', KEYS[1], ARGV[i])
  if value then
    local size = tonumber(string.match(value, '^(%d+):')) or 0
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
    unshare(ARGV[i], size)
    removed = removed + 1
    freed = freed + size
  end
  redis.call('ZREM', KEYS[4], ARGV[1] .. '\n' .. ARGV[i])
end
if removed > 0 then
  if redis.call('DECRBY', KEYS[3], freed) <= 0 or redis.call('HLEN', KEYS[1]) == 0 then
    redis.call('DEL', KEYS[3])
  end
  redis.call('HINCRBY', KEYS[5], 'items', -removed)
  redis.call('HINCRBY', KEYS[5], 'bytes', -freed)
end
return removed

-- A logout, for the user store's record (RedisUserStore.set_offline): known users only.
-- KEYS[1] user hash, KEYS[2] users:online zset; ARGV name, now
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'online', '0', 'last_seen', ARGV[2])
return 1

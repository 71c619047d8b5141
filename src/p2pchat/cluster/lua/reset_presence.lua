-- Everyone the user store marks online is marked offline (RedisUserStore.reset_presence).
-- KEYS[1] users:online zset; ARGV prefix
local names = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, name in ipairs(names) do
  redis.call('HSET', ARGV[1] .. ':user:' .. name, 'online', '0')
end
redis.call('DEL', KEYS[1])
return #names

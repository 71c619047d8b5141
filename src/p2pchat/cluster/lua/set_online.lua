-- A login, for the user store's record (RedisUserStore.set_online).
-- KEYS[1] names hash, KEYS[2] user hash, KEYS[3] users:online zset
-- ARGV name, casefolded name, addresses (JSON), now
redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSETNX', KEYS[2], 'first_seen', ARGV[4])
redis.call('HSET', KEYS[2], 'name', ARGV[1], 'addresses', ARGV[3], 'online', '1',
  'last_seen', ARGV[4])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
return 1

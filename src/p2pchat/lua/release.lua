-- Let a name go, if this node holds it, and tell every node (RedisCluster.release).
-- KEYS[1] session:NAME hash, KEYS[2] online zset, KEYS[3] node:ID:users set
-- ARGV name, node id, presence channel. Returns 1 if it was held here.
redis.call('SREM', KEYS[3], ARGV[1])
if redis.call('HGET', KEYS[1], 'node') ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[3], cjson.encode({node = ARGV[2], user = ARGV[1], online = false}))
return 1

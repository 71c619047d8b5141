-- Let a name go, if this node holds it for this login, and tell every node
-- (RedisCluster.release).
-- KEYS[1] session:NAME hash, KEYS[2] online zset, KEYS[3] node:ID:users set
-- ARGV name, node id, presence channel, token (the login's own)
-- Returns 1 if it was held here for that login; 0 if not (nothing is touched when a newer
-- login of this node holds it).
local f = redis.call('HMGET', KEYS[1], 'node', 'token')
if f[1] ~= ARGV[2] then
  redis.call('SREM', KEYS[3], ARGV[1])  -- not this node's (any more)
  return 0
end
if f[2] ~= ARGV[4] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('PUBLISH', ARGV[3], cjson.encode({node = ARGV[2], user = ARGV[1], online = false}))
return 1

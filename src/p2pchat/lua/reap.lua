-- A node is gone: log its users out and tell every node, exactly once (RedisCluster).
-- KEYS[1] node:ID alive key, KEYS[2] nodes set, KEYS[3] node:ID:users set,
-- KEYS[4] online zset
-- ARGV prefix, node id, presence channel, force ("1": a node clearing its own id)
-- Returns the names logged out, or false if the node is alive or was reaped already.
if ARGV[4] ~= '1' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return false end
  if redis.call('SREM', KEYS[2], ARGV[2]) == 0 then return false end
else
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[2])
end
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local session = ARGV[1] .. ':session:' .. name
  if redis.call('HGET', session, 'node') == ARGV[2] then
    redis.call('DEL', session)
    redis.call('ZREM', KEYS[4], name)
    redis.call('PUBLISH', ARGV[3], cjson.encode({node = ARGV[2], user = name, online = false}))
    out[#out + 1] = name
  end
end
redis.call('DEL', KEYS[3])
return out

-- Log out the users of a node and tell every node (RedisCluster).
-- KEYS[1] node:ID alive key, KEYS[2] nodes set, KEYS[3] node:ID:users set,
-- KEYS[4] online zset
-- ARGV prefix, node id, presence channel, mode, token (of the process leaving)
-- mode "dead": a node whose alive key has expired, exactly once (it leaves the nodes set
-- in the same step); "former": a node clearing what a former process with its id left
-- (its key is this process's now, and stays); "leave": a node leaving (its key dropped),
-- unless another process holds its id now.
-- Returns the names logged out, or false if nothing was done.
local mode = ARGV[4]
if mode == 'dead' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return false end
  if redis.call('SREM', KEYS[2], ARGV[2]) == 0 then return false end
elseif mode == 'leave' then
  local holder = redis.call('GET', KEYS[1])
  if holder and holder ~= ARGV[5] then return false end
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

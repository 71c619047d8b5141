-- Take a name for a node, across every node, and tell every node (RedisCluster.claim).
-- KEYS[1] session:NAME hash, KEYS[2] online zset, KEYS[3] node:ID:users set
-- ARGV prefix, name, node id, certificate, addresses (JSON), presence channel, traversal,
-- token (this login's own), refresh ("1": registering again a login this node holds)
-- Returns {1} (taken, news published), {2} (this login held it already: refreshed, no
-- news), {3} (refresh, and another login of this node holds it: nothing done),
-- {0, holder} (a live node holds it), {-1, holder} (held by a node that is dead).
-- Else an older login of this node (logging out still) is replaced: it went, this came.
local f = redis.call('HMGET', KEYS[1], 'node', 'token')
local holder, token = f[1], f[2]
if holder and holder ~= ARGV[3] then
  if redis.call('EXISTS', ARGV[1] .. ':node:' .. holder) == 1 then return {0, holder} end
  return {-1, holder}
end
local same = holder and token == ARGV[8]
if holder and not same and ARGV[9] == '1' then return {3} end
redis.call('HSET', KEYS[1], 'node', ARGV[3], 'certificate', ARGV[4], 'addresses', ARGV[5],
  'traversal', ARGV[7], 'token', ARGV[8])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
redis.call('SADD', KEYS[3], ARGV[2])
if same then return {2} end
if holder then
  redis.call('PUBLISH', ARGV[6], cjson.encode({node = ARGV[3], user = ARGV[2], online = false}))
end
redis.call('PUBLISH', ARGV[6], cjson.encode({node = ARGV[3], user = ARGV[2], online = true}))
return {1}

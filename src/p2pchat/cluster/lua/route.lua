-- Hand a message to a user on whichever node holds them (RedisCluster.push).
-- KEYS[1] session:NAME hash; ARGV prefix, "NAME\nMESSAGE"
-- Returns 1 if published to their node, 0 if they are not logged in.
local node = redis.call('HGET', KEYS[1], 'node')
if not node then return 0 end
redis.call('PUBLISH', ARGV[1] .. ':push:' .. node, ARGV[2])
return 1

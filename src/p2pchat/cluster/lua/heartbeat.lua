-- A node says it is alive (RedisCluster heartbeat), if it still holds its id.
-- KEYS[1] node:ID alive key, KEYS[2] nodes set; ARGV node id, ttl (ms), token
-- Returns 1 (refreshed), 0 (the key was gone, Redis restarted or the node was taken for
-- dead: taken again now, and the node registers again what it holds), -1 (another
-- process holds the id: nothing is touched).
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[3] then return -1 end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
if holder then return 1 end
return 0

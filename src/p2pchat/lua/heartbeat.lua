-- A node says it is alive (RedisCluster heartbeat).
-- KEYS[1] node:ID alive key, KEYS[2] nodes set; ARGV node id, ttl (ms), value
-- Returns 1 if the alive key was there still, 0 if not (Redis restarted, or the node was
-- taken for dead): the node then registers again what it holds.
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return existed

-- A process takes a node id, if no live process holds it (RedisCluster start).
-- KEYS[1] node:ID alive key, KEYS[2] nodes set; ARGV node id, ttl (ms), token
-- Returns 1 if taken (the key holds this process's token now), 0 if held.
if not redis.call('SET', KEYS[1], ARGV[3], 'NX', 'PX', ARGV[2]) then return 0 end
redis.call('SADD', KEYS[2], ARGV[1])
return 1

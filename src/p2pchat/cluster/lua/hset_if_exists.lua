-- HSET on a hash that exists already; nothing if it does not.
-- KEYS[1] the hash; ARGV field, value, field, value...
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1

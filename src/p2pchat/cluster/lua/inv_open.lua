-- Check an invitation's bounds and add it, in one step (RedisInvitations.open).
-- KEYS[1] inv:ID, KEYS[2] inv:sent:SENDER, KEYS[3] inv:recv:RECIPIENT,
-- KEYS[4] inv:user:SENDER, KEYS[5] inv:user:RECIPIENT
-- ARGV prefix, id, sender, recipient, ttl (ms), max_sent, max_received, max_per_pair
-- Returns {'ok', 0} or {BOUND, pending} with BOUND one of pair, sent, received.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local pair = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if redis.call('HGET', ARGV[1] .. ':inv:' .. id, 'recipient') == ARGV[4] then
    pair = pair + 1
  end
end
if pair >= tonumber(ARGV[8]) then return {'pair', pair} end
local sent = redis.call('ZCARD', KEYS[2])
if sent >= tonumber(ARGV[6]) then return {'sent', sent} end
local received = redis.call('ZCARD', KEYS[3])
if received >= tonumber(ARGV[7]) then return {'received', received} end
redis.call('HSET', KEYS[1], 'sender', ARGV[3], 'recipient', ARGV[4], 'accepted', '0')
redis.call('PEXPIRE', KEYS[1], ttl)
for i = 2, 5 do
  redis.call('ZADD', KEYS[i], now + ttl, ARGV[2])
  if redis.call('PTTL', KEYS[i]) < ttl + 60000 then
    redis.call('PEXPIRE', KEYS[i], ttl + 60000)
  end
end
return {'ok', 0}

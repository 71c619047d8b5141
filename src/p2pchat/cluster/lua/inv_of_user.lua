-- The invitations a user sent or received that still stand (RedisInvitations.of_user).
-- KEYS[1] inv:user:NAME; ARGV prefix
-- Returns a flat list: id, sender, recipient, accepted, id, ...
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local f = redis.call('HMGET', ARGV[1] .. ':inv:' .. id, 'sender', 'recipient', 'accepted')
  if f[1] and f[2] then
    out[#out + 1] = id
    out[#out + 1] = f[1]
    out[#out + 1] = f[2]
    out[#out + 1] = f[3] or '0'
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out

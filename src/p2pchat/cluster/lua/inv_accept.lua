-- Mark an invitation answered: it stops counting, and lives a dial window more.
-- KEYS[1] inv:ID; ARGV prefix, id, window (ms)
-- Returns 1 (accepted now), 0 (accepted already), -1 (gone).
local f = redis.call('HMGET', KEYS[1], 'sender', 'recipient', 'accepted')
if not f[1] or not f[2] then return -1 end
if f[3] == '1' then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'accepted', '1')
redis.call('PEXPIRE', KEYS[1], window)
redis.call('ZREM', ARGV[1] .. ':inv:sent:' .. f[1], ARGV[2])
redis.call('ZREM', ARGV[1] .. ':inv:recv:' .. f[2], ARGV[2])
for _, name in ipairs({f[1], f[2]}) do
  local user = ARGV[1] .. ':inv:user:' .. name
  redis.call('ZADD', user, now + window, ARGV[2])
  if redis.call('PTTL', user) < window + 60000 then
    redis.call('PEXPIRE', user, window + 60000)
  end
end
return 1

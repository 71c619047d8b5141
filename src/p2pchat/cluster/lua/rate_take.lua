-- Take one token of a user's rate, across every node (RedisRates.take): GCRA, the token
-- bucket kept as one "theoretical arrival time" (microseconds, Redis's clock).
-- KEYS[1] rate:KIND:NAME; ARGV interval (microseconds per token; 0: none ever comes back),
-- burst. Returns 1 (taken) or 0 (none left: nothing changed). The key expires once the
-- bucket would be full again.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
if interval <= 0 then
  local used = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
  if used + 1 > burst then return 0 end
  redis.call('SET', KEYS[1], used + 1)
  return 1
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local after = tat + interval
if after - now > burst * interval then return 0 end
redis.call('SET', KEYS[1], string.format('%.0f', after), 'PX', math.ceil((after - now) / 1000))
return 1

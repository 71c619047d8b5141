-- Drop up to ARGV[3] items past their time, across recipients (RedisMailbox.expire).
-- KEYS[1] expiry zset, KEYS[2] totals hash; ARGV prefix, now, batch
-- Returns how many items were dropped (and how many entries were looked at).
local entries = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])
local dropped = 0
for _, entry in ipairs(entries) do
  local recipient, item = string.match(entry, '^([^\n]*)\n(.*)$')
  redis.call('ZREM', KEYS[1], entry)
  if recipient then
    local box = ARGV[1] .. ':mail:' .. recipient
    local value = redis.call('HGET', box .. ':items', item)
    if value then
      local size = tonumber(string.match(value, '^(%d+):')) or 0
      redis.call('HDEL', box .. ':items', item)
      redis.call('ZREM', box .. ':order', item)
      if redis.call('DECRBY', box .. ':bytes', size) <= 0 then
        redis.call('DEL', box .. ':bytes')
      end
      local sender = redis.call('HGET', box .. ':from', item)
      if sender then
        redis.call('HDEL', box .. ':from', item)
        if redis.call('HINCRBY', box .. ':senders', 'n:' .. sender, -1) <= 0 then
          redis.call('HDEL', box .. ':senders', 'n:' .. sender, 'b:' .. sender)
        else
          redis.call('HINCRBY', box .. ':senders', 'b:' .. sender, -size)
        end
      end
      redis.call('HINCRBY', KEYS[2], 'items', -1)
      redis.call('HINCRBY', KEYS[2], 'bytes', -size)
      dropped = dropped + 1
    end
  end
end
return {dropped, #entries}

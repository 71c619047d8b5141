-- Forget an invitation; say what it was, to the one caller that removed it.
-- KEYS[1] inv:ID; ARGV prefix, id, pending_only ("1": not if accepted)
-- Returns false (gone, or accepted and pending_only) or {sender, recipient, accepted}.
local f = redis.call('HMGET', KEYS[1], 'sender', 'recipient', 'accepted')
if not f[1] or not f[2] then return false end
if ARGV[3] == '1' and f[3] == '1' then return false end
redis.call('DEL', KEYS[1])
redis.call('ZREM', ARGV[1] .. ':inv:sent:' .. f[1], ARGV[2])
redis.call('ZREM', ARGV[1] .. ':inv:recv:' .. f[2], ARGV[2])
redis.call('ZREM', ARGV[1] .. ':inv:user:' .. f[1], ARGV[2])
redis.call('ZREM', ARGV[1] .. ':inv:user:' .. f[2], ARGV[2])
return {f[1], f[2], f[3] or '0'}

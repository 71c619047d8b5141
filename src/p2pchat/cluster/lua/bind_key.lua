-- Whom a name belongs to, binding a key to it on first use (RedisUserStore.bind_key).
-- KEYS[1] names hash (casefolded -> registered)
-- ARGV prefix, name, casefolded name, key, now, create ("1"/"0"), mailbox_key, mailbox_sig
-- Returns false (unknown, or without a key yet, and create not asked) or
-- {registered, bound key, created, mailbox_key, mailbox_sig}.
local registered = redis.call('HGET', KEYS[1], ARGV[3])
if registered and ARGV[6] ~= '1' then
  -- a user from before identities is bound as a new name is: only when create is asked
  local bound = redis.call('HGET', ARGV[1] .. ':user:' .. registered, 'key')
  if not bound or bound == '' then return false end
end
local created = 0
if not registered then
  if ARGV[6] ~= '1' then return false end
  registered = ARGV[2]
  redis.call('HSET', KEYS[1], ARGV[3], registered)
  created = 1
end
local user = ARGV[1] .. ':user:' .. registered
redis.call('HSETNX', user, 'name', registered)
redis.call('HSETNX', user, 'first_seen', ARGV[5])
redis.call('HSETNX', user, 'last_seen', ARGV[5])
redis.call('HSETNX', user, 'online', '0')
redis.call('HSETNX', user, 'addresses', '[]')
local bound = redis.call('HGET', user, 'key')
if not bound or bound == '' then
  bound = ARGV[4]
  redis.call('HSET', user, 'key', bound)
  if ARGV[7] ~= '' then
    redis.call('HSET', user, 'mailbox_key', ARGV[7], 'mailbox_sig', ARGV[8])
  end
end
local published = redis.call('HMGET', user, 'mailbox_key', 'mailbox_sig')
return {registered, bound, created, published[1] or '', published[2] or ''}

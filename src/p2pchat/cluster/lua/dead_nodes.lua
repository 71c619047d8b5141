-- The nodes that registered and whose alive key has expired (RedisCluster reaper).
-- KEYS[1] nodes set; ARGV prefix, this node's id
local dead = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if node ~= ARGV[2] and redis.call('EXISTS', ARGV[1] .. ':node:' .. node) == 0 then
    dead[#dead + 1] = node
  end
end
return dead

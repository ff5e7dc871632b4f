-- restore.lua: rewrite an instance's whole presence in a room in place. No
-- DEL first: a tab that stays is never missing, even for an instant.
--
-- KEYS[1]  the instance's tabs key
-- ARGV[1]  TTL, ms
-- ARGV[2]  announcement channel
-- ARGV[3]  announcement JSON up to the sequence number
-- ARGV[4]  announcement JSON after it
-- ARGV[5]  the new sequence
-- ARGV[6..] tab id, tab JSON, ...
--
-- Returns the sequence.
local keep = {_seq = true}
for i = 6, #ARGV, 2 do
  keep[ARGV[i]] = true
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[1], '_seq', ARGV[5])
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if not keep[f] then redis.call('HDEL', KEYS[1], f) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3] .. ARGV[5] .. ARGV[4])
return tonumber(ARGV[5])

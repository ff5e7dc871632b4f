-- restore.lua: rewrite an instance's whole presence in a room in place. No
-- DEL first: a tab that stays is never missing, even for an instant.
--
-- KEYS[1]..KEYS[4] as tab.lua (KEYS[5] unused: this is how a store that
-- lost its data gets it back)
-- ARGV[1]  the room's channel
-- ARGV[2]  announcement JSON up to the sequence number
-- ARGV[3]  announcement JSON after it
-- ARGV[4]  the new sequence
-- ARGV[5]  the instance
-- ARGV[6]  the room
-- ARGV[7]  now, unix ms
-- ARGV[8..] tab id, tab JSON, ...
--
-- Returns the sequence.
local keep = {_seq = true}
for i = 8, #ARGV, 2 do
  keep[ARGV[i]] = true
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[1], '_seq', ARGV[4])
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if not keep[f] then redis.call('HDEL', KEYS[1], f) end
end
redis.call('SADD', KEYS[2], ARGV[5])
redis.call('SADD', KEYS[3], ARGV[6])
redis.call('ZADD', KEYS[4], ARGV[7], ARGV[6])
redis.call('PUBLISH', ARGV[1], ARGV[2] .. ARGV[4] .. ARGV[3])
return tonumber(ARGV[4])

-- restore.lua: rewrite a hash this instance owns (its tabs in a room, or
-- its memberships) whole, in place, in a new sequence, and announce it:
-- receivers re-read the hash. No DEL first: an entry that stays is never
-- missing, even for an instant.
--
-- KEYS     as tab.lua; the epoch marker is not checked (this is how a
-- store that lost its data gets it back); a memberships hash has KEYS[1]
-- alone
-- ARGV[1]  the channel
-- ARGV[2]  announcement JSON up to the sequence number
-- ARGV[3]  announcement JSON after it
-- ARGV[4]  the new sequence
-- ARGV[5]  for tabs only: the instance ('' otherwise)
-- ARGV[6]  for tabs only: the room ('' otherwise)
-- ARGV[7]  for tabs only: now, unix ms ('' otherwise)
-- ARGV[8..] field, value, ...
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
if #KEYS > 1 then
  redis.call('SADD', KEYS[2], ARGV[5])
  redis.call('SADD', KEYS[3], ARGV[6])
  redis.call('ZADD', KEYS[4], ARGV[7], ARGV[6])
end
redis.call('PUBLISH', ARGV[1], ARGV[2] .. ARGV[4] .. ARGV[3])
return tonumber(ARGV[4])

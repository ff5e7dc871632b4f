-- memberrestore.lua: rewrite an instance's whole memberships hash in place
-- (no DEL first: a membership that stays is never missing, even for an
-- instant), in a new sequence, and announce it: receivers re-read the hash.
--
-- KEYS[1]  as member.lua (no epoch check: this is how a store that lost its
-- data gets it back)
-- ARGV[1]  the members channel
-- ARGV[2]  announcement JSON up to the sequence number
-- ARGV[3]  announcement JSON after it
-- ARGV[4]  the new sequence
-- ARGV[5..] field, region, ...
--
-- Returns the sequence.
local keep = {_seq = true}
for i = 5, #ARGV, 2 do
  keep[ARGV[i]] = true
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[1], '_seq', ARGV[4])
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if not keep[f] then redis.call('HDEL', KEYS[1], f) end
end
redis.call('PUBLISH', ARGV[1], ARGV[2] .. ARGV[4] .. ARGV[3])
return tonumber(ARGV[4])

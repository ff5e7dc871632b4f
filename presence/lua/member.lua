-- member.lua: add or remove one membership of this instance (a user with
-- at least one of its tabs in a room), number the change and announce it on
-- the global members channel. Receivers apply deltas in sequence and re-read
-- the hash when they see a gap.
--
-- KEYS[1]  the instance's memberships     gp::members:<inst>
-- KEYS[2]  the store's epoch marker       gp::epoch
-- ARGV[1]  field: <room>:<user>
-- ARGV[2]  the instance's region to add, '' to remove
-- ARGV[3]  the members channel
-- ARGV[4]  announcement JSON up to the sequence number
-- ARGV[5]  announcement JSON after it
-- ARGV[6]  the last sequence the instance knows it published
--
-- Returns the change's sequence; 0 when nothing changed; -1 when the hash
-- is gone although the instance had written it (reaped while it stalled, or
-- lost with the store): the caller must rewrite it whole (memberrestore.lua).
-- Fails with UNSYNCED on a store without the epoch marker (see switch.lua).
if redis.call('EXISTS', KEYS[2]) == 0 then
  return redis.error_reply('UNSYNCED the store holds no epoch marker')
end
if redis.call('EXISTS', KEYS[1]) == 0 and tonumber(ARGV[6]) > 0 then return -1 end
local n
if ARGV[2] ~= '' then n = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
else n = redis.call('HDEL', KEYS[1], ARGV[1]) end
if n == 0 then return 0 end
local seq = redis.call('HINCRBY', KEYS[1], '_seq', 1)
if seq <= tonumber(ARGV[6]) then
  seq = tonumber(ARGV[6]) + 1
  redis.call('HSET', KEYS[1], '_seq', seq)
end
redis.call('PUBLISH', ARGV[3], ARGV[4] .. seq .. ARGV[5])
return seq

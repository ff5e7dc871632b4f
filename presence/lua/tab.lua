-- tab.lua: add or remove one tab of this instance, number the change and
-- announce it as a delta. Receivers apply deltas in sequence and re-read the
-- hash when they see a gap.
--
-- KEYS[1]  the instance's tabs in the room   gp:<room>:tabs:<inst>
-- KEYS[2]  the room's instance index         gp:<room>:insts
-- KEYS[3]  the instance's rooms              gp::rooms:<inst>
-- KEYS[4]  the index of rooms by last use    gp::rooms
-- KEYS[5]  the store's epoch marker           gp::epoch
-- ARGV[1]  tab id
-- ARGV[2]  tab JSON to add, '' to remove
-- ARGV[3]  the room's channel
-- ARGV[4]  announcement JSON up to the sequence number
-- ARGV[5]  announcement JSON after it
-- ARGV[6]  the last sequence the instance knows it published here
-- ARGV[7]  the instance
-- ARGV[8]  the room
-- ARGV[9]  now, unix ms
--
-- Returns the change's sequence; 0 when nothing changed; -1 when the hash
-- is gone although the instance had published to it (reaped while the
-- instance was stalled, or lost with the store): the caller must rewrite
-- all its tabs here, or the others would be lost. Fails with UNSYNCED on a
-- store without the epoch marker (see switch.lua).
if redis.call('EXISTS', KEYS[5]) == 0 then
  return redis.error_reply('UNSYNCED the store holds no epoch marker')
end
local fresh = redis.call('EXISTS', KEYS[1]) == 0
if fresh and tonumber(ARGV[6]) > 0 then return -1 end
local n
if ARGV[2] ~= '' then n = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
else n = redis.call('HDEL', KEYS[1], ARGV[1]) end
if n == 0 then return 0 end
if fresh then
  redis.call('SADD', KEYS[2], ARGV[7])
  redis.call('SADD', KEYS[3], ARGV[8])
end
redis.call('ZADD', KEYS[4], ARGV[9], ARGV[8])
local seq = redis.call('HINCRBY', KEYS[1], '_seq', 1)
if seq <= tonumber(ARGV[6]) then
  seq = tonumber(ARGV[6]) + 1
  redis.call('HSET', KEYS[1], '_seq', seq)
end
redis.call('PUBLISH', ARGV[3], ARGV[4] .. seq .. ARGV[5])
return seq

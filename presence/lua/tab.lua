-- tab.lua: add or remove one entry of a hash this instance owns, number
-- the change and announce it as a delta: a tab in a room's tabs hash, or a
-- membership (a user with at least one of its tabs in a room) in its
-- memberships hash. Receivers apply deltas in sequence and re-read the hash
-- when they see a gap.
--
-- KEYS[1]  the hash             gp:<room>:tabs:<inst> or gp::members:<inst>
-- KEYS[2]  for tabs only: the room's instance index   gp:<room>:insts
-- KEYS[3]  for tabs only: the instance's rooms        gp::rooms:<inst>
-- KEYS[4]  for tabs only: the index of rooms by use   gp::rooms
-- KEYS[#KEYS]  the store's epoch marker               gp::epoch
-- ARGV[1]  field: tab id, or <room>:<user>
-- ARGV[2]  value to add (tab JSON, or the instance's region), '' to remove
-- ARGV[3]  the channel
-- ARGV[4]  announcement JSON up to the sequence number
-- ARGV[5]  announcement JSON after it
-- ARGV[6]  the last sequence the instance knows it published here
-- ARGV[7]  for tabs only: the instance
-- ARGV[8]  for tabs only: the room
-- ARGV[9]  for tabs only: now, unix ms
--
-- Returns the change's sequence; 0 when nothing changed; -1 when the hash
-- is gone although the instance had published to it (reaped while the
-- instance was stalled, or lost with the store): the caller must rewrite
-- the whole hash (restore.lua), or the other entries would be lost. Fails
-- with UNSYNCED on a store without the epoch marker (see switch.lua).
if redis.call('EXISTS', KEYS[#KEYS]) == 0 then
  return redis.error_reply('UNSYNCED the store holds no epoch marker')
end
local fresh = redis.call('EXISTS', KEYS[1]) == 0
if fresh and tonumber(ARGV[6]) > 0 then return -1 end
local n
if ARGV[2] ~= '' then n = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
else n = redis.call('HDEL', KEYS[1], ARGV[1]) end
if n == 0 then return 0 end
if #KEYS == 5 then
  if fresh then
    redis.call('SADD', KEYS[2], ARGV[7])
    redis.call('SADD', KEYS[3], ARGV[8])
  end
  redis.call('ZADD', KEYS[4], ARGV[9], ARGV[8])
end
local seq = redis.call('HINCRBY', KEYS[1], '_seq', 1)
if seq <= tonumber(ARGV[6]) then
  seq = tonumber(ARGV[6]) + 1
  redis.call('HSET', KEYS[1], '_seq', seq)
end
redis.call('PUBLISH', ARGV[3], ARGV[4] .. seq .. ARGV[5])
return seq

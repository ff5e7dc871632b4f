-- tab.lua: add or remove one tab of this instance, number the change and
-- announce it as a delta. Receivers apply deltas in sequence and re-read the
-- hash when they see a gap.
--
-- KEYS[1]  the instance's tabs key  gp:<room>:tabs:<instance>
-- ARGV[1]  tab id
-- ARGV[2]  tab JSON to add, '' to remove
-- ARGV[3]  TTL, ms
-- ARGV[4]  announcement channel
-- ARGV[5]  announcement JSON up to the sequence number
-- ARGV[6]  announcement JSON after it
-- ARGV[7]  the last sequence the instance knows it published
--
-- Returns the change's sequence; 0 when nothing changed; -1 when the hash
-- is gone although the instance had published to it (expired or lost with
-- the store): the caller must rewrite all its tabs, or the others would be
-- lost.
if tonumber(ARGV[7]) > 0 and redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local n
if ARGV[2] ~= '' then n = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
else n = redis.call('HDEL', KEYS[1], ARGV[1]) end
if n == 0 then return 0 end
local seq = redis.call('HINCRBY', KEYS[1], '_seq', 1)
if seq <= tonumber(ARGV[7]) then
  seq = tonumber(ARGV[7]) + 1
  redis.call('HSET', KEYS[1], '_seq', seq)
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5] .. seq .. ARGV[6])
return seq

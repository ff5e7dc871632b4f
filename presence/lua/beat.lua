-- beat.lua: renew an instance's presence in a room and announce its current
-- sequence, so a receiver that missed a delta notices within one beat.
--
-- KEYS[1]  the instance's tabs key
-- ARGV[1]  TTL, ms
-- ARGV[2]  announcement channel
-- ARGV[3]  announcement JSON up to the sequence number
-- ARGV[4]  announcement JSON after it
--
-- Returns the sequence, or -1 when the hash is gone: the caller rewrites it.
if redis.call('PEXPIRE', KEYS[1], ARGV[1]) == 0 then return -1 end
local seq = redis.call('HGET', KEYS[1], '_seq') or '0'
redis.call('PUBLISH', ARGV[2], ARGV[3] .. seq .. ARGV[4])
return tonumber(seq)

-- say.lua: append a message to the region's own feed and announce it.
--
-- KEYS[1]  the region's feed key    gp:<room>:feed:<region>
-- KEYS[2]  the message's key        gp::op:<message id>  (idempotency)
-- KEYS[3]  the room's region index  gp:<room>:regions
-- KEYS[4]  the index of rooms by last use   gp::rooms
-- KEYS[5]  the store's epoch marker          gp::epoch
-- ARGV[1]  message JSON
-- ARGV[2]  how many messages the feed keeps
-- ARGV[3]  the room's channel
-- ARGV[4]  announcement JSON
-- ARGV[5]  how long the message's key is kept, ms
-- ARGV[6]  this region
-- ARGV[7]  the room
-- ARGV[8]  now, unix ms
--
-- Returns 1, or 0 when the message was stored before (a retry); fails with
-- UNSYNCED on a store without the epoch marker (see switch.lua).
if redis.call('EXISTS', KEYS[5]) == 0 then
  return redis.error_reply('UNSYNCED the store holds no epoch marker')
end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('SET', KEYS[2], '1', 'PX', ARGV[5])
redis.call('SADD', KEYS[3], ARGV[6])
redis.call('ZADD', KEYS[4], ARGV[8], ARGV[7])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1

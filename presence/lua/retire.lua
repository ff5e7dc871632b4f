-- retire.lua: delete rooms nobody has used for the retention period. A room
-- with a live instance's tabs is in use, whatever its last write.
--
-- KEYS[1]  the index of rooms by last use   gp::rooms
-- ARGV[1]  the cutoff, unix ms: rooms last used before it go
-- ARGV[2]  at most this many rooms per call
-- ARGV[3]  key prefix                       gp:
-- ARGV[4]  liveness key prefix              gp::inst:
-- ARGV[5]  now, unix ms
--
-- Returns how many rooms were deleted.
local n = 0
for _, room in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))) do
  local p = ARGV[3] .. room
  local used = false
  for _, inst in ipairs(redis.call('SMEMBERS', p .. ':insts')) do
    if redis.call('EXISTS', ARGV[4] .. inst) == 1 then used = true end
  end
  if used then
    redis.call('ZADD', KEYS[1], ARGV[5], room)
  else
    for _, g in ipairs(redis.call('SMEMBERS', p .. ':regions')) do
      redis.call('DEL', p .. ':light:' .. g, p .. ':feed:' .. g)
    end
    for _, inst in ipairs(redis.call('SMEMBERS', p .. ':insts')) do
      redis.call('DEL', p .. ':tabs:' .. inst)
    end
    redis.call('DEL', p .. ':regions', p .. ':insts')
    redis.call('ZREM', KEYS[1], room)
    n = n + 1
  end
end
return n

-- reap.lua: remove a dead instance's tabs from every room it was in. Any
-- instance may run it, any number of times: it does nothing while the
-- instance is alive, and nothing twice.
--
-- KEYS[1]  the instance's liveness key   gp::inst:<inst>
-- KEYS[2]  the instance's rooms          gp::rooms:<inst>
-- ARGV[1]  the instance
-- ARGV[2]  '1' when the instance leaves by itself (its goodbye), else '0'
-- ARGV[3]  key prefix                    gp:
--
-- Returns how many rooms it was removed from, or -1 if it is alive.
if ARGV[2] ~= '1' and redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local rooms = redis.call('SMEMBERS', KEYS[2])
for _, room in ipairs(rooms) do
  redis.call('DEL', ARGV[3] .. room .. ':tabs:' .. ARGV[1])
  redis.call('SREM', ARGV[3] .. room .. ':insts', ARGV[1])
end
redis.call('DEL', KEYS[2])
if ARGV[2] == '1' then redis.call('DEL', KEYS[1]) end
return #rooms

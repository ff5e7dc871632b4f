-- reap.lua: remove a dead instance's tabs from every room it was in, and
-- its memberships (announcing that they are gone). Any
-- instance may run it, any number of times: it does nothing while the
-- instance is alive, and nothing twice.
--
-- KEYS[1]  the instance's liveness key   gp::inst:<inst>
-- KEYS[2]  the instance's rooms          gp::rooms:<inst>
-- KEYS[3]  the instance's memberships    gp::members:<inst>
-- KEYS[4]  the index of instances        gp::instances
-- ARGV[1]  the instance
-- ARGV[2]  '1' when the instance leaves by itself (its goodbye), else '0'
-- ARGV[3]  key prefix                    gp:
-- ARGV[4]  the members channel
-- ARGV[5]  the announcement that the instance's memberships are gone
--
-- Returns how many rooms it was removed from, or -1 if it is alive.
if ARGV[2] ~= '1' and redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local rooms = redis.call('SMEMBERS', KEYS[2])
for _, room in ipairs(rooms) do
  redis.call('DEL', ARGV[3] .. room .. ':tabs:' .. ARGV[1])
  redis.call('SREM', ARGV[3] .. room .. ':insts', ARGV[1])
end
redis.call('DEL', KEYS[2])
redis.call('HDEL', KEYS[4], ARGV[1])
if redis.call('DEL', KEYS[3]) == 1 then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
if ARGV[2] == '1' then redis.call('DEL', KEYS[1]) end
return #rooms

-- beat.lua: an instance's heartbeat, one per instance whatever its rooms:
-- renew its liveness key, and ping itself through its subscription.
--
-- KEYS[1]  the instance's liveness key   gp::inst:<inst>
-- KEYS[2]  the instance's rooms          gp::rooms:<inst>
-- KEYS[3]  the index of instances        gp::instances
-- ARGV[1]  the instance's region
-- ARGV[2]  TTL, ms
-- ARGV[3]  the instance's ping channel
-- ARGV[4]  '1' if the instance has tabs in some room
-- ARGV[5]  the instance
-- ARGV[6]  now, unix ms
--
-- Returns 1, or 0 when the instance was taken for dead: its key was gone,
-- or its rooms were reaped (on a KeyDB node that saw its key expire behind
-- a black-holed link, and passed the reaping on once the link healed), or
-- the store lost them. The caller then rewrites its tabs.
local alive = redis.call('EXISTS', KEYS[1])
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[2]) == 0 then alive = 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
-- Readers find every instance's memberships from the index. An HSET that
-- changes the value is replicated every time, unlike an SADD of a member
-- already there: after a KeyDB full sync kept another node's version of
-- the whole key, the next beat puts the instance back on every node.
redis.call('HSET', KEYS[3], ARGV[5], ARGV[6])
redis.call('PUBLISH', ARGV[3], 'ping')
return alive

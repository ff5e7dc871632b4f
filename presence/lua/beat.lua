-- beat.lua: an instance's heartbeat, one per instance whatever its rooms:
-- renew its liveness key, and ping itself through its subscription.
--
-- KEYS[1]  the instance's liveness key   gp::inst:<inst>
-- ARGV[1]  the instance's region
-- ARGV[2]  TTL, ms
-- ARGV[3]  the instance's ping channel
--
-- Returns 1, or 0 when the key was gone: the instance was taken for dead
-- (and its tabs reaped), or the store lost it; the caller rewrites its tabs.
local alive = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], 'ping')
return alive

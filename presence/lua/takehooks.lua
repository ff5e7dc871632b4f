-- takehooks.lua: move a dead instance's undelivered webhook events to this
-- instance's outbox and return them. Any instance may run it, any number
-- of times: it does nothing while the instance is alive, and the first
-- taker gets everything.
--
-- KEYS[1]  the dead instance's liveness key   gp::inst:<dead>
-- KEYS[2]  its outbox                          gp::outbox:<dead>
-- KEYS[3]  this instance's outbox              gp::outbox:<inst>
--
-- Returns id, event JSON, ... (empty if it is alive or had none).
if redis.call('EXISTS', KEYS[1]) == 1 then return {} end
local all = redis.call('HGETALL', KEYS[2])
if #all == 0 then return {} end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[3], unpack(all))
return all

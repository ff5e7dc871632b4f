-- claimhook.lua: claim a webhook event for this instance, once across
-- instances, and keep it in this instance's outbox until delivered, so
-- that another instance delivers it if this one dies first. Claiming an
-- event this instance holds already answers 1 again (a retried call).
--
-- KEYS[1]  the event's claim      gp::hook:<id>
-- KEYS[2]  this instance's outbox  gp::outbox:<inst>
-- ARGV[1]  the event id
-- ARGV[2]  the event JSON
-- ARGV[3]  how long the claim is kept, ms
-- ARGV[4]  this instance
--
-- Returns 1 when this instance has the event, 0 when another has it.
if not redis.call('SET', KEYS[1], ARGV[4], 'NX', 'PX', ARGV[3]) and redis.call('GET', KEYS[1]) ~= ARGV[4] then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1

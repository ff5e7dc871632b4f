-- switch.lua: one lightbulb switch by one region, in one round trip: bring
-- the stored records up to what the caller knows, read every region's
-- record, apply, announce, answer.
--
-- KEYS[1]  the region's light key   gp:<room>:light:<region>
-- KEYS[2]  the operation's key      gp::op:<op id>  (idempotency)
-- KEYS[3]  the room's region index  gp:<room>:regions     (SADD only)
-- KEYS[4]  the index of rooms by last use   gp::rooms
-- KEYS[5]  the store's epoch marker          gp::epoch
-- ARGV[1]  this region
-- ARGV[2]  'flip', 'set', or 'merge' (only bring the records up to date)
-- ARGV[3]  the operation's clock, 16 hex digits (string order = time order)
-- ARGV[4]  stamp JSON (who, from where, when)
-- ARGV[5]  for 'set', the set's JSON opened before its base: {"hlc":N,"on":B,"base":
-- ARGV[6]  the room's channel
-- ARGV[7]  announcement JSON opened for the region and record: {"t":"light",...,
-- ARGV[8]  how long the operation's key is kept, ms
-- ARGV[9]  prefix of the room's light keys   gp:<room>:light:
-- ARGV[10] the room
-- ARGV[11] now, unix ms (the room's last use)
-- ARGV[12..] the records the caller holds, six values each: region, flips,
--          last_hlc, last, set_hlc, set ('' for an absent register). A store
--          that lost them (restarted empty) gets them back before the
--          switch applies, so no flip or set made before is undone.
--
-- A flip or set to a store without the epoch marker (restarted empty, a
-- KeyDB node not yet synced from its peers) fails with UNSYNCED: written
-- there, it could undo the history its peers hold.
--
-- Returns {'ok' or 'dup', region, record, region, record, ...} with each
-- record a flat field/value list; or {'clock', hlc} when a set's clock is
-- not past a set already stored: the caller observes hlc and retries.
-- Keys other than KEYS[] are read and written: standalone Redis and KeyDB
-- only, never Redis Cluster.
if ARGV[2] ~= 'merge' and redis.call('EXISTS', KEYS[5]) == 0 then
  return redis.error_reply('UNSYNCED the store holds no epoch marker')
end
local names, seen = {}, {}
local function add(g)
  if not seen[g] then seen[g] = true; names[#names + 1] = g end
end
local function announce(g)
  local rec = redis.call('HGETALL', ARGV[9] .. g)
  redis.call('PUBLISH', ARGV[6], ARGV[7] .. '"g":' .. cjson.encode(g) .. ',"rec":' .. cjson.encode(rec) .. '}')
end

add(ARGV[1])
for _, g in ipairs(redis.call('SMEMBERS', KEYS[3])) do add(g) end
for i = 12, #ARGV, 6 do
  local g, key = ARGV[i], ARGV[9] .. ARGV[i]
  add(g)
  local cur = redis.call('HMGET', key, 'flips', 'last_hlc', 'set_hlc')
  local behind = false
  if tonumber(cur[1] or '0') < tonumber(ARGV[i + 1]) then
    redis.call('HSET', key, 'flips', ARGV[i + 1]); behind = true
  end
  if ARGV[i + 2] ~= '' and ((not cur[2]) or cur[2] < ARGV[i + 2]) then
    redis.call('HSET', key, 'last_hlc', ARGV[i + 2], 'last', ARGV[i + 3]); behind = true
  end
  if ARGV[i + 4] ~= '' and ((not cur[3]) or cur[3] < ARGV[i + 4]) then
    redis.call('HSET', key, 'set_hlc', ARGV[i + 4], 'set', ARGV[i + 5]); behind = true
  end
  if behind then
    redis.call('SADD', KEYS[3], g)
    announce(g)
  end
end

local done = ARGV[2] == 'merge' or redis.call('EXISTS', KEYS[2]) == 1
if not done then
  if ARGV[2] == 'set' then
    local base, newest = {}, ''
    for _, g in ipairs(names) do
      local f = redis.call('HMGET', ARGV[9] .. g, 'flips', 'set_hlc')
      base[#base + 1] = cjson.encode(g) .. ':' .. (f[1] or '0')
      if f[2] and f[2] > newest then newest = f[2] end
    end
    if newest >= ARGV[3] then return {'clock', newest} end
    redis.call('HSET', KEYS[1], 'set_hlc', ARGV[3], 'set', ARGV[5] .. '{' .. table.concat(base, ',') .. '}}')
  else
    redis.call('HINCRBY', KEYS[1], 'flips', 1)
  end
  local last = redis.call('HGET', KEYS[1], 'last_hlc')
  if (not last) or last < ARGV[3] then
    redis.call('HSET', KEYS[1], 'last_hlc', ARGV[3], 'last', ARGV[4])
  end
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[8])
  redis.call('SADD', KEYS[3], ARGV[1])
  redis.call('ZADD', KEYS[4], ARGV[11], ARGV[10])
  announce(ARGV[1])
end

local out = {done and 'dup' or 'ok'}
for _, g in ipairs(names) do
  out[#out + 1] = g
  out[#out + 1] = redis.call('HGETALL', ARGV[9] .. g)
end
return out

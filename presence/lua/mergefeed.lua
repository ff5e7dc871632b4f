-- mergefeed.lua: write back messages of a region's feed that an instance
-- remembers and the store lost. The feed stays ordered by message ID (which
-- starts with the message's clock) and as long as it is kept; a message is
-- stored once, however many instances restore it.
--
-- KEYS[1]  the region's feed key
-- KEYS[2]  the room's region index
-- ARGV[1]  the region
-- ARGV[2]  how many messages the feed keeps
-- ARGV[3]  announcement channel
-- ARGV[4..] message ID, message JSON, announcement JSON; ...
--
-- Returns how many messages were missing.
local all, have = {}, {}
for _, item in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local ok, m = pcall(cjson.decode, item)
  if ok and type(m) == 'table' and type(m.id) == 'string' and not have[m.id] then
    have[m.id] = true
    all[#all + 1] = {m.id, item}
  end
end
local missing = {}
for i = 4, #ARGV, 3 do
  if not have[ARGV[i]] then
    have[ARGV[i]] = true
    all[#all + 1] = {ARGV[i], ARGV[i + 1]}
    missing[#missing + 1] = ARGV[i + 2]
  end
end
redis.call('SADD', KEYS[2], ARGV[1])
if #missing == 0 then return 0 end
table.sort(all, function(a, b) return a[1] < b[1] end)
local keep = tonumber(ARGV[2])
redis.call('DEL', KEYS[1])
for i = math.max(1, #all - keep + 1), #all do redis.call('RPUSH', KEYS[1], all[i][2]) end
for _, a in ipairs(missing) do redis.call('PUBLISH', ARGV[3], a) end
return #missing

-- Compare-and-set of the image record KEYS[1]: only if its `key` field is ARGV[1] (or, with
-- ARGV[1] empty, if there is no record), sets it to ARGV[2] (deletes it if empty); turns the
-- reservation ARGV[4] of the hash KEYS[3] into usage KEYS[2] by ARGV[5] bytes (if it lapsed,
-- only if they still fit the limit KEYS[4] or ARGV[6]) and takes ARGV[3] bytes off the usage,
-- never below zero; adds (ARGV[7] = 'add') or removes ('remove') the entry ARGV[8] of the owner's
-- list KEYS[5]; appends the event ARGV[9] (if not empty) to the workspace's outbox stream KEYS[6].
-- The duplicate index: the image ARGV[13] (if not empty) leaves the sorted sets KEYS[13] (its
-- SHA-256) and KEYS[14..17] (its hash quarters, if ARGV[16] = '1') and its entry KEYS[18] goes;
-- the image ARGV[10] (if not empty) joins KEYS[7] and KEYS[8..11] (if ARGV[15] = '1') scored
-- ARGV[12], its entry ARGV[11] in KEYS[12]. With ARGV[14] = '1', refuses ({3}) if an image other
-- than those two is indexed under KEYS[7].
-- Returns {1} if it changed, {0} on a conflict, {2, used, limit} if a lapsed
-- reservation no longer fits, {3} if refused as a duplicate.
local current = redis.call('GET', KEYS[1])
if current then
  if cjson.decode(current)['key'] ~= ARGV[1] then return {0} end
elseif ARGV[1] ~= '' then
  return {0}
end
if ARGV[14] == '1' then
  for _, other in ipairs(redis.call('ZRANGE', KEYS[7], 0, 2)) do
    if other ~= ARGV[10] and other ~= ARGV[13] then return {3} end
  end
end
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
local grow = tonumber(ARGV[5])
if grow > 0 then
  local held, mine = live(KEYS[3], now_ms())
  if not mine[ARGV[4]] then
    local limit = tonumber(redis.call('GET', KEYS[4]) or ARGV[6])
    if used + held + grow > limit then return {2, used + held, limit} end
  end
  redis.call('HDEL', KEYS[3], ARGV[4])
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
local left = used + grow - tonumber(ARGV[3])
if left < 0 then left = 0 end
redis.call('SET', KEYS[2], left)
if ARGV[7] == 'add' then
  redis.call('ZADD', KEYS[5], 0, ARGV[8])
elseif ARGV[7] == 'remove' then
  redis.call('ZREM', KEYS[5], ARGV[8])
end
if ARGV[9] ~= '' then
  redis.call('XADD', KEYS[6], '*', 'event', ARGV[9])
end
if ARGV[13] ~= '' then
  redis.call('ZREM', KEYS[13], ARGV[13])
  if ARGV[16] == '1' then
    for i = 14, 17 do redis.call('ZREM', KEYS[i], ARGV[13]) end
  end
  redis.call('DEL', KEYS[18])
end
if ARGV[10] ~= '' then
  redis.call('ZADD', KEYS[7], ARGV[12], ARGV[10])
  if ARGV[15] == '1' then
    for i = 8, 11 do redis.call('ZADD', KEYS[i], ARGV[12], ARGV[10]) end
  end
  redis.call('SET', KEYS[12], ARGV[11])
end
return {1}

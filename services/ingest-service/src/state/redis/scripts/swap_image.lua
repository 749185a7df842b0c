-- Compare-and-set of the image record KEYS[1]: only if its `key` field is ARGV[1] (or, with
-- ARGV[1] empty, if there is no record), sets it to ARGV[2] (deletes it if empty); turns the
-- reservation ARGV[4] of the hash KEYS[3] into usage KEYS[2] by ARGV[5] bytes (if it lapsed,
-- only if they still fit the limit KEYS[4] or ARGV[6]) and takes ARGV[3] bytes off the usage,
-- never below zero; adds (ARGV[7] = 'add') or removes ('remove') the entry ARGV[8] of the owner's
-- list KEYS[5]; appends the event ARGV[9] (if not empty) to the workspace's outbox stream KEYS[6].
-- Returns {1} if it changed, {0} on a conflict, {2, used, limit} if a lapsed
-- reservation no longer fits.
local current = redis.call('GET', KEYS[1])
if current then
  if cjson.decode(current)['key'] ~= ARGV[1] then return {0} end
elseif ARGV[1] ~= '' then
  return {0}
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
return {1}

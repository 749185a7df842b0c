-- The oldest delivery of a webhook's queue KEYS[1], if it is of the event ARGV[1]: replaced by
-- ARGV[2] ('retry' in ARGV[3]) or popped and pushed onto the log KEYS[2], which keeps the newest
-- ARGV[4] ('done'). Returns 1 if it changed, 0 if the oldest is another event (or none).
local head = redis.call('LINDEX', KEYS[1], 0)
if not head then return 0 end
if cjson.decode(head)['event_id'] ~= ARGV[1] then return 0 end
if ARGV[3] == 'done' then
  redis.call('LPOP', KEYS[1])
  redis.call('LPUSH', KEYS[2], ARGV[2])
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
else
  redis.call('LSET', KEYS[1], 0, ARGV[2])
end
return 1

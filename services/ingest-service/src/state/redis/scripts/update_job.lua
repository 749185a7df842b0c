-- Compare-and-set of the job record KEYS[1]: only if its `version` is ARGV[2], sets it to ARGV[1]
-- (forgotten at ARGV[7] ms if that is not '0': a final job) and, by ARGV[3]: 'hold' leaves the queue entry ARGV[4] with its
-- worker; 'retry' acknowledges and deletes it from the stream KEYS[2] (group ARGV[8]) and puts
-- the job ARGV[5] in the delayed set KEYS[3], due at ARGV[6] ms; 'done' acknowledges and deletes
-- it; appends the event ARGV[9] (if not empty) to the outbox stream KEYS[4]. Returns 1 if it changed, 0 if not (another version, or gone).
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if string.format('%d', cjson.decode(current)['version']) ~= ARGV[2] then return 0 end
if ARGV[7] == '0' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[7])
end
if ARGV[3] ~= 'hold' then
  if ARGV[4] ~= '' then
    redis.call('XACK', KEYS[2], ARGV[8], ARGV[4])
    redis.call('XDEL', KEYS[2], ARGV[4])
  end
  if ARGV[3] == 'retry' then
    redis.call('ZADD', KEYS[3], ARGV[6], ARGV[5])
  else
    redis.call('ZREM', KEYS[3], ARGV[5])
  end
end
if ARGV[9] ~= '' then
  redis.call('XADD', KEYS[4], '*', 'event', ARGV[9])
end
return 1

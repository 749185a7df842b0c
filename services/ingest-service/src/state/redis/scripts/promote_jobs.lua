-- Moves up to ARGV[1] jobs of the delayed set KEYS[1] whose time has come (score <= ARGV[2] ms)
-- to the queue stream KEYS[2]. Returns how many moved.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, ARGV[1])
for _, id in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'job', id)
  redis.call('ZREM', KEYS[1], id)
end
return #due

-- Stores the session record KEYS[1] (ARGV[1]) unless the caller's set of open sessions KEYS[2]
-- (id -> expiry ms) already holds ARGV[4] live ones; adds ARGV[2] to it, expiring at ARGV[3].
-- Returns 1 if stored, 0 if the cap was reached (nothing changed but lapsed entries).
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('PEXPIREAT', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[1])
return 1

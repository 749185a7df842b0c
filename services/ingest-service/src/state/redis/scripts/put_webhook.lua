-- Registers the webhook ARGV[1] (JSON ARGV[2]) in the hash KEYS[1] unless it holds ARGV[3]
-- webhooks already. Returns 1 if registered, 0 if not.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1

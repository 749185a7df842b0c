-- Compare-and-set of the session record KEYS[1]: only if its `version` is ARGV[2], sets it to
-- ARGV[1]; with ARGV[4] = '1' (the session has its result) removes ARGV[3] from the caller's
-- open sessions KEYS[2]. Returns 1 if it changed, 0 if not (another version, or gone).
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if string.format('%d', cjson.decode(current)['version']) ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[4] == '1' then redis.call('ZREM', KEYS[2], ARGV[3]) end
return 1

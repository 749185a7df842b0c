-- Sets KEYS[1] to ARGV[2] only if it (0 if absent) is ARGV[1]; 1 if it changed.
if tonumber(redis.call('GET', KEYS[1]) or '0') ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1

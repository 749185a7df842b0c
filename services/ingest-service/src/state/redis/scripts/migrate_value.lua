-- Moves a value of the earlier layout: KEYS[1] becomes KEYS[2] unless KEYS[2] exists (then
-- the newer value is kept); only if KEYS[1] still holds ARGV[1].
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'NX')
redis.call('DEL', KEYS[1])
return 1

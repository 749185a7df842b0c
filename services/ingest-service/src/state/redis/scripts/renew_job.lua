-- Renews consumer ARGV[3]'s hold on the entry ARGV[2] of the stream KEYS[1] (group ARGV[1]):
-- resets its idle time, only if that consumer still holds it. Returns 1 if renewed, else 0.
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #pending == 0 or pending[1][2] ~= ARGV[3] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
return 1

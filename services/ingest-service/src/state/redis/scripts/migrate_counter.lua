-- Moves a counter of the earlier layout: adds KEYS[1] to KEYS[2] and deletes it.
local value = redis.call('GET', KEYS[1])
if value then
  redis.call('INCRBY', KEYS[2], value)
  redis.call('DEL', KEYS[1])
end
return 1

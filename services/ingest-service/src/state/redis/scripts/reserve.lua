-- Reserves ARGV[1] bytes under the ID ARGV[3] in the hash KEYS[3] for ARGV[4] ms, unless the
-- usage KEYS[1] plus the live reservations plus the bytes pass the limit KEYS[2] (or ARGV[2]).
-- A live reservation with the same ID is granted again, uncharged. Returns {1, used + held}
-- or {0, used + held, limit}.
local now = now_ms()
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local limit = tonumber(redis.call('GET', KEYS[2]) or ARGV[2])
local held, mine = live(KEYS[3], now)
if mine[ARGV[3]] then
  return {1, used + held}
end
local bytes = tonumber(ARGV[1])
if used + held + bytes > limit then
  return {0, used + held, limit}
end
redis.call('HSET', KEYS[3], ARGV[3], ARGV[1] .. ':' .. (now + tonumber(ARGV[4])))
return {1, used + held + bytes}

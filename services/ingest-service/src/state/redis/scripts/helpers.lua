-- Lua helpers shared by the scripts: the server's clock in ms, and the live reservations of a
-- workspace's hash (`id -> "bytes:expiry_ms"`), lapsed ones deleted on the way.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function live(hash, now)
  local held, mine = 0, {}
  local entries = redis.call('HGETALL', hash)
  for i = 1, #entries, 2 do
    local bytes, expiry = string.match(entries[i + 1], '^(%d+):(%d+)$')
    if bytes == nil or tonumber(expiry) <= now then
      redis.call('HDEL', hash, entries[i])
    else
      held = held + tonumber(bytes)
      mine[entries[i]] = tonumber(bytes)
    end
  end
  return held, mine
end

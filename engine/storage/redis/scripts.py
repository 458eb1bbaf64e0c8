"""The Lua scripts the shared store runs on the server, each atomic there."""

# Swap image records and flip live bits at once. ARGV: triples of id, record (empty:
# delete), new slot (-1: none). Returns the slots retired (replaced or deleted).
COMMIT = """
local retired = {}
for i = 1, #ARGV, 3 do
  local id, rec, slot = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local old = redis.call('HGET', KEYS[1], id)
  if old and #old >= 24 then
    local was = struct.unpack('<i8', old, 17)
    if was >= 0 and was ~= slot then
      redis.call('SETBIT', KEYS[2], was, 0)
      retired[#retired + 1] = was
    end
  end
  if rec == '' then
    redis.call('HDEL', KEYS[1], id)
  else
    redis.call('HSET', KEYS[1], id, rec)
    if slot >= 0 then redis.call('SETBIT', KEYS[2], slot, 1) end
  end
end
return retired
"""

# Remove slots from datasketch's tables: each bucket it is in (emptied buckets lose
# their field in the band's hash too), then its own list. ARGV: basename, bands, keys.
LSH_REMOVE = """
local base, nb = ARGV[1], tonumber(ARGV[2])
for i = 3, #ARGV do
  local key = ARGV[i]
  local list = base .. '_keys' .. key
  for j, h in ipairs(redis.call('LRANGE', list, 0, -1)) do
    local table = base .. '_bucket_' .. struct.pack('>I2', (j - 1) % nb)
    redis.call('SREM', table .. h, key)
    if redis.call('EXISTS', table .. h) == 0 then redis.call('HDEL', table, h) end
  end
  redis.call('DEL', list)
  redis.call('HDEL', base .. '_keys', key)
end
return 1
"""

# Re-create full vector strings at their exact size: SETRANGE grows a string greedily
# (up to twice its length, or 1 MB more), which cost a fifth of the vectors' memory.
# Atomic, so a row another worker writes later (within the length) is never lost.
TIGHTEN = """
for _, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v then redis.call('SET', k, v) end
end
return 1
"""

# Delete a lease only if this process still holds it.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

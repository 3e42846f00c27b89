-- Update a set that lives with a mailbox (capability hashes of a pair mailbox, banned handles
-- of a contact address), all or nothing. KEYS: m, the set. ARGV: now, idle ttl, required kind,
-- most members, fallback key ttl (s), number of members to remove, the members to remove,
-- then the members to add. Removals apply first.
-- Returns {0, members now}, {-1} no mailbox, {-2} limit (nothing changed), {-3} wrong kind.
-- Safe to retry: SREM and SADD are idempotent.
local m, set = KEYS[1], KEYS[2]
local now, idle, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local rec = redis.call('HMGET', m, 'ad', 'kd')
if not rec[1] or idle_expired(tonumber(rec[1]), now, idle) then
  return {-1}
end
if (rec[2] or 'open') ~= ARGV[3] then
  return {-3}
end
local first_rm, last_rm = 7, 6 + tonumber(ARGV[6])
local removed, seen = {}, {}
local size = redis.call('SCARD', set)
for i = first_rm, last_rm do
  local v = ARGV[i]
  if not removed[v] then
    removed[v] = true
    if redis.call('SISMEMBER', set, v) == 1 then
      size = size - 1
    end
  end
end
local n_add = #ARGV - last_rm
for i = last_rm + 1, #ARGV do
  local v = ARGV[i]
  if not seen[v] then
    seen[v] = true
    if removed[v] or redis.call('SISMEMBER', set, v) == 0 then
      size = size + 1
    end
  end
end
if n_add > 0 and size > limit then
  return {-2}
end
if last_rm >= first_rm then
  redis.call('SREM', set, unpack(ARGV, first_rm, last_rm))
end
if n_add > 0 then
  redis.call('SADD', set, unpack(ARGV, last_rm + 1, #ARGV))
  -- The set expires with the mailbox record (touch moves them together).
  local ttl = redis.call('PTTL', m)
  if ttl <= 0 then
    ttl = tonumber(ARGV[5]) * 1000
  end
  redis.call('PEXPIRE', set, ttl)
end
return {0, redis.call('SCARD', set)}

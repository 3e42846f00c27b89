-- Bundle handout. KEYS: m, k, p. ARGV: sid, now, idle ttl, one-time items per hour.
-- Returns {1, static, item} (an item was popped and counted), {1, static} (none left, or the
-- hour's allowance is used up), {0} (no static part, or the mailbox is suspended: nothing
-- handed out), {-1} (no live mailbox with this send id: the caller's index entry was stale
-- or the mailbox is gone).
-- Not idempotent: a retry after a lost reply pops another item (the first one is then never
-- handed to anyone; no item is ever handed out twice).
local m, k, p = KEYS[1], KEYS[2], KEYS[3]
local now, idle, per_hour = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local rec = redis.call('HMGET', m, 'sid', 'ad', 'su')
if not rec[1] or rec[1] ~= ARGV[1] or idle_expired(tonumber(rec[2]), now, idle) then
  return {-1}
end
if rec[3] then
  return {0}
end
local st = redis.call('HMGET', k, 's', 'h', 'c')
if not st[1] then
  return {0}
end
local hour = math.floor(now / 3600)
local count = 0
if st[2] and tonumber(st[2]) == hour then
  count = tonumber(st[3])
end
if count < per_hour then
  local item = redis.call('LPOP', p)
  if item then
    redis.call('HSET', k, 'h', hour, 'c', count + 1)
    return {1, st[1], item}
  end
end
return {1, st[1]}

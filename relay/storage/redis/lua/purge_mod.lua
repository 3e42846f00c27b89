-- Purge moderation data past its retention (protocol.md §8). KEYS: f, fc, r, rr, ri, ro, au.
-- ARGV: now, report window (s), report retention (s), audit retention (s), most reports and
-- audit entries to remove. A franking key is destroyed report_window seconds after its
-- successor was created; the newest key is never destroyed.
-- Returns the number of keys, reports and audit entries removed.
local f, fc, r, rr, ri, ro, au = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local keep_reports, keep_audit, most = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local removed = 0
local created = redis.call('HGETALL', fc)
local newest_past = nil
for i = 1, #created, 2 do
  local kid, at = tonumber(created[i]), tonumber(created[i + 1])
  if at + window <= now and (newest_past == nil or kid > newest_past) then
    newest_past = kid
  end
end
if newest_past then
  for i = 1, #created, 2 do
    if tonumber(created[i]) < newest_past then
      redis.call('HDEL', f, created[i])
      redis.call('HDEL', fc, created[i])
      removed = removed + 1
    end
  end
end
local ids = redis.call('ZRANGEBYSCORE', ri, '-inf', now - keep_reports, 'LIMIT', 0, most)
for _, id in ipairs(ids) do
  redis.call('HDEL', r, id)
  redis.call('HDEL', rr, id)
  redis.call('ZREM', ri, id)
  redis.call('ZREM', ro, id)
  removed = removed + 1
end
local cutoff = now - keep_audit
local entries = redis.call('XRANGE', au, '-', '+', 'COUNT', most)
for _, entry in ipairs(entries) do
  local fields = entry[2]
  if tonumber(fields[2]) > cutoff then
    break
  end
  redis.call('XDEL', au, entry[1])
  removed = removed + 1
end
return removed

-- Purge one mailbox. KEYS: every key of the mailbox (m, q, e, x, d, y first). ARGV: now,
-- idle ttl. An idle mailbox is deleted with all its keys (prekeys, capability hashes and bans
-- included)
-- ({1, 0, 0, sid}); otherwise expired envelopes and dedupe records are removed
-- ({0, envelopes, dedupe records, ''}).
local m, q, e, x, d, y = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now, idle = tonumber(ARGV[1]), tonumber(ARGV[2])
local rec = redis.call('HMGET', m, 'sid', 'ad')
if not rec[1] then
  return {0, 0, 0, ''}
end
if idle_expired(tonumber(rec[2]), now, idle) then
  redis.call('DEL', unpack(KEYS))
  return {1, 0, 0, rec[1]}
end
local n, b = remove_expired(q, e, x, now)
uncount(m, n, b)
return {0, n, prune_dedupe(d, y, now, 0), ''}

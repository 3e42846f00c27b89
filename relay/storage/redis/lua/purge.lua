-- Sweep one mailbox the expiry index says may be due. KEYS: every key of the mailbox (m, q,
-- e, x, d, y first; 10 keys), then xi (the expiry index of its slot) and g (the gauges).
-- ARGV: now, idle ttl, rid, most (envelopes and dedupe records removed per call), index ttl.
-- An idle mailbox is deleted with all its keys ({1, 0, 0, sid}); otherwise at most `most`
-- expired envelopes and dedupe records are removed and the mailbox's index entry is set to
-- what is due next ({0, envelopes, dedupe records, ''}; due again at once if `most` cut the
-- work short, so the sweep calls again). A record whose key already expired (the sweep came
-- later than the GC margin) leaves the gauges with what its keys still hold.
local m, q, e, x, d, y = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local xi, g = KEYS[11], KEYS[12]
local now, idle, rid, most = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local rec = redis.call('HMGET', m, 'sid', 'ad', 'n', 'b', 'g')
if not rec[1] then
  local b = 0
  for _, blob in ipairs(redis.call('HVALS', e)) do
    b = b + blob_size(blob)
  end
  if redis.call('ZSCORE', xi, rid) then
    gauge(g, true, -1, -redis.call('HLEN', e), -b)
  end
  redis.call('UNLINK', unpack(KEYS, 1, 10))
  redis.call('ZREM', xi, rid)
  return {0, 0, 0, ''}
end
if idle_expired(tonumber(rec[2]), now, idle) then
  gauge(g, rec[5], -1, -tonumber(rec[3]), -tonumber(rec[4]))
  redis.call('UNLINK', unpack(KEYS, 1, 10))
  redis.call('ZREM', xi, rid)
  return {1, 0, 0, rec[1]}
end
local n, b = remove_expired_upto(q, e, x, now, most)
uncount(m, n, b)
gauge(g, rec[5], 0, -n, -b)
local nd = prune_dedupe(d, y, now, most)
local due = now
if n < most and nd < most then
  due = next_due(tonumber(rec[2]), x, y, idle)
end
redis.call('ZADD', xi, due, rid)
keep_alive(xi, ARGV[5])
return {0, n, nd, ''}

-- Count a mailbox record written before the gauges and the expiry index existed (once:
-- it then carries g=1) and make sure it is in the index. KEYS: every key of the mailbox (m,
-- q, e, x, d, y first; 10 keys), then xi and g. ARGV: rid, idle ttl, index ttl.
-- Returns 1 if the record was counted now, 0 otherwise.
local m, x, y, xi, g = KEYS[1], KEYS[4], KEYS[6], KEYS[11], KEYS[12]
local rec = redis.call('HMGET', m, 'sid', 'ad', 'n', 'b', 'g')
if not rec[1] then
  return 0
end
due_by(xi, ARGV[1], next_due(tonumber(rec[2]), x, y, tonumber(ARGV[2])), ARGV[3])
if rec[5] then
  return 0
end
redis.call('HSET', m, 'g', 1)
gauge(g, true, 1, tonumber(rec[3] or 0), tonumber(rec[4] or 0))
keep_alive(g, ARGV[3])
return 1

-- Recall (protocol.md §5.10, revision 15): delete the envelope ARGV[2] (eid) of the mailbox
-- if it is still stored and its dedupe record carries the recall hash ARGV[3] (lowercase
-- hex, compared in constant time). KEYS: m, q, e, x, d, g (the gauges). ARGV: sid, eid, rc
-- hex, now, idle ttl. Returns 1 deleted, 0 nothing changed (unknown mailbox or eid, no or
-- another recall hash, dedupe window over, envelope acknowledged or purged already).
-- Safe to retry: a second run finds no recall hash in the record.
local m, q, e, x, d = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local eid, want, now, idle = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local rec = redis.call('HMGET', m, 'sid', 'ad', 'g')
if not rec[1] or rec[1] ~= ARGV[1] or idle_expired(tonumber(rec[2]), now, idle) then
  return 0
end
local dup = redis.call('HGET', d, eid)
if not dup then
  return 0
end
local seq, ts, until_, stored = string.match(dup, '^(%d+):(%d+):(%d+):(%x+)$')
if not stored or now >= tonumber(until_) or #stored ~= #want then
  return 0
end
-- Constant time over the whole hash: no early exit on the first differing byte.
local diff = 0
for i = 1, #want do
  diff = bit.bor(diff, bit.bxor(string.byte(stored, i), string.byte(want, i)))
end
if diff ~= 0 then
  return 0
end
local size = remove_envelope(q, e, x, seq)
if not size then
  return 0
end
uncount(m, 1, size)
gauge(KEYS[6], rec[3], 0, -1, -size)
redis.call('HSET', d, eid, seq .. ':' .. ts .. ':' .. until_)
return 1

-- Fetch: removes expired envelopes of the mailbox, then returns {seq1, blob1, seq2, ...}
-- for up to ARGV[2] envelopes with seq > ARGV[1], stopping before the ciphertext total
-- exceeds ARGV[3] (but returning at least one). ARGV[4]: now, ARGV[5]: idle ttl.
-- KEYS: m, q, e, x, g (the gauges).
local m, q, e, x = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local limit, max_bytes = tonumber(ARGV[2]), tonumber(ARGV[3])
local now, idle = tonumber(ARGV[4]), tonumber(ARGV[5])
local rec = redis.call('HMGET', m, 'ad', 'g')
if not rec[1] or idle_expired(tonumber(rec[1]), now, idle) then
  return {}
end
local n, b = remove_expired(q, e, x, now)
uncount(m, n, b)
gauge(KEYS[5], rec[2], 0, -n, -b)
local seqs = redis.call('ZRANGEBYSCORE', q, '(' .. ARGV[1], '+inf', 'LIMIT', 0, limit)
local out, total = {}, 0
for _, seq in ipairs(seqs) do
  local blob = redis.call('HGET', e, seq)
  if blob then
    total = total + blob_size(blob)
    if #out > 0 and total > max_bytes then
      break
    end
    out[#out + 1] = seq
    out[#out + 1] = blob
  end
end
return out

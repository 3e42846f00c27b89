-- Ack: delete the envelopes whose seqs are ARGV; unknown seqs are ignored. Returns a count.
-- KEYS: m, q, e, x, g (the gauges).
local m, q, e, x = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local n, b = 0, 0
for i = 1, #ARGV do
  local size = remove_envelope(q, e, x, ARGV[i])
  if size then
    n = n + 1
    b = b + size
  end
end
uncount(m, n, b)
if n > 0 then
  gauge(KEYS[5], redis.call('HGET', m, 'g'), 0, -n, -b)
end
return n

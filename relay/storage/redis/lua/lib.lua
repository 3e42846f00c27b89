-- Helpers prepended to every mailbox script of relay/storage/redis/ (not a script itself).
--
-- Mailbox scripts receive the keys of ONE mailbox, all sharing the hash tag {<rid hex>}:
--   KEYS[1] m  hash: sid, ok (owner key), cd (created day), ad (active day),
--              ls (last seq, never reused), n (envelopes), b (ciphertext bytes)
--   KEYS[2] q  sorted set: seq scored by seq (FIFO order)
--   KEYS[3] e  hash: seq -> blob (4-byte big-endian ciphertext length || msgpack body)
--   KEYS[4] x  sorted set: seq scored by expiry second
--   KEYS[5] d  hash: eid -> "seq:ts:expiry" (dedupe records)
--   KEYS[6] y  sorted set: eid scored by dedupe expiry second
--   m also holds, from revision 3 (protocol.md §4.8-§4.9): kd (kind 'pair' or 'addr';
--              absent: 'open'), bs/ba/bd/bp (boundaries of a contact address: size, att,
--              day, pow), rd/rc (day and count of the latest stored contact requests)
-- create, delete and purge also get the other keys of the mailbox:
--   KEYS[7] k  hash: s (static prekey part), h/c (hour and count of the one-time handout
--              window), u (token of the last applied upload, so a retried upload is a no-op)
--   KEYS[8] p  list: one-time prekey items, oldest first
--   KEYS[9] a  set: capability hashes of a pair mailbox
--   KEYS[10] n set: banned handles of a contact address
-- The prekey scripts (put_prekeys, take_prekeys) get {m, k, p} as KEYS[1..3]; deposit gets
-- {m, q, e, x, d, y, a, n}; set_members {m, a or n}; touch {m, k, p, a, n}.
-- Times are passed in by the caller (whole seconds); the scripts never trust the Redis clock
-- for the contract, only for key TTLs (garbage collection).

local DAY = 86400

local function idle_expired(active_day, now, idle_ttl)
  return now >= (active_day + 1) * DAY + idle_ttl
end

local function blob_size(blob)
  local b1, b2, b3, b4 = string.byte(blob, 1, 4)
  return ((b1 * 256 + b2) * 256 + b3) * 256 + b4
end

-- Delete one envelope; returns its ciphertext size, or false if it was not there.
local function remove_envelope(q, e, x, seq)
  local blob = redis.call('HGET', e, seq)
  redis.call('ZREM', q, seq)
  redis.call('ZREM', x, seq)
  if not blob then
    return false
  end
  redis.call('HDEL', e, seq)
  return blob_size(blob)
end

-- Delete every envelope whose expiry is <= now; returns count and bytes.
local function remove_expired(q, e, x, now)
  local seqs = redis.call('ZRANGEBYSCORE', x, '-inf', now)
  local n, b = 0, 0
  for _, seq in ipairs(seqs) do
    local size = remove_envelope(q, e, x, seq)
    if size then
      n = n + 1
      b = b + size
    end
  end
  return n, b
end

-- Delete dedupe records whose expiry is <= now (at most max if max > 0); returns a count.
local function prune_dedupe(d, y, now, max)
  local eids
  if max > 0 then
    eids = redis.call('ZRANGEBYSCORE', y, '-inf', now, 'LIMIT', 0, max)
  else
    eids = redis.call('ZRANGEBYSCORE', y, '-inf', now)
  end
  for _, eid in ipairs(eids) do
    redis.call('HDEL', d, eid)
    redis.call('ZREM', y, eid)
  end
  return #eids
end

-- Subtract deleted envelopes from the counters of an existing mailbox record.
local function uncount(m, n, b)
  if n > 0 and redis.call('EXISTS', m) == 1 then
    redis.call('HINCRBY', m, 'n', -n)
    redis.call('HINCRBY', m, 'b', -b)
  end
end


-- Expiry index and gauges (issue 21). Mailbox scripts that change what is due or what is
-- counted also get, after the mailbox's own keys, the expiry index of the mailbox's hash
-- slot (xi: sorted set, member rid, score a second at or before which something of the
-- mailbox may be due; same slot as the mailbox keys) and the gauges hash (g: m mailbox
-- records, n envelopes, b ciphertext bytes). A record counted in the gauges carries g=1 (a
-- record written before the gauges existed is counted once by the sweeper's backfill).
-- Keys that live as long as what they hold get TTL + GC_MARGIN, renewed only when less
-- than TTL is left (keep_alive), so a deposit does not rewrite five TTLs every time.

local GC_MARGIN = 86400

local function keep_alive(key, ttl)
  if redis.call('TTL', key) < tonumber(ttl) then
    redis.call('EXPIRE', key, tonumber(ttl) + GC_MARGIN)
  end
end

-- Add deltas to the gauges (only for a counted record).
local function gauge(g, counted, dm, dn, db)
  if not counted then
    return
  end
  if dm ~= 0 then
    redis.call('HINCRBY', g, 'm', dm)
  end
  if dn ~= 0 then
    redis.call('HINCRBY', g, 'n', dn)
  end
  if db ~= 0 then
    redis.call('HINCRBY', g, 'b', db)
  end
end

-- The earliest second something of the mailbox is due: its idle deadline, its oldest
-- envelope expiry, its oldest dedupe expiry.
local function next_due(active_day, x, y, idle)
  local due = (active_day + 1) * DAY + idle
  for _, z in ipairs({x, y}) do
    local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
    if first[2] and tonumber(first[2]) < due then
      due = tonumber(first[2])
    end
  end
  return due
end

-- Lower the mailbox's score in the index to `due` (adds it if absent).
local function due_by(xi, rid, due, ttl)
  redis.call('ZADD', xi, 'LT', due, rid)
  keep_alive(xi, ttl)
end

-- Delete every expired envelope (at most `most`, 0: all); returns count and bytes.
local function remove_expired_upto(q, e, x, now, most)
  local seqs
  if most > 0 then
    seqs = redis.call('ZRANGEBYSCORE', x, '-inf', now, 'LIMIT', 0, most)
  else
    seqs = redis.call('ZRANGEBYSCORE', x, '-inf', now)
  end
  local n, b = 0, 0
  for _, seq in ipairs(seqs) do
    local size = remove_envelope(q, e, x, seq)
    if size then
      n = n + 1
      b = b + size
    end
  end
  return n, b
end

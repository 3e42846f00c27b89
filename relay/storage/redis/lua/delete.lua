-- Delete a mailbox and all its data keys (prekeys, capability hashes and bans included) at
-- once. KEYS: every key of the mailbox (m first, 10 keys), then xi (the expiry index of its
-- slot) and g (the gauges). ARGV[1]: the expected send id, or '' for any; ARGV[2]: the rid.
-- Returns {1, sid} if a record was deleted, {0, ''} otherwise (leftover data keys of the
-- tag are deleted in both cases).
local rec = redis.call('HMGET', KEYS[1], 'sid', 'n', 'b', 'g')
if rec[1] and ARGV[1] ~= '' and rec[1] ~= ARGV[1] then
  return {0, ''}
end
redis.call('UNLINK', unpack(KEYS, 1, 10))
redis.call('ZREM', KEYS[11], ARGV[2])
if rec[1] then
  gauge(KEYS[12], rec[4], -1, -tonumber(rec[2]), -tonumber(rec[3]))
  return {1, rec[1]}
end
return {0, ''}

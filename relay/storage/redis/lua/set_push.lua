-- Register or forget the push endpoint of a mailbox (protocol.md §28): the fields pu (URL)
-- and pt (token) of its record hash KEYS[1], so they go with the record (deleted, expired,
-- replaced by a create that reuses the id). ARGV: now, idle ttl, then url and token to
-- register, or nothing more to forget. Returns 1, or 0 if no live record exists.
local ad = redis.call('HGET', KEYS[1], 'ad')
if not ad or idle_expired(tonumber(ad), tonumber(ARGV[1]), tonumber(ARGV[2])) then
  return 0
end
if #ARGV == 2 then
  redis.call('HDEL', KEYS[1], 'pu', 'pt')
else
  redis.call('HSET', KEYS[1], 'pu', ARGV[3], 'pt', ARGV[4])
end
return 1

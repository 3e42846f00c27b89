-- Helpers prepended to the moderation scripts of relay/storage/redis/ (revision 4,
-- protocol.md §4.11). Their keys are not per mailbox: they share the hash tag {mod}, so on
-- Redis Cluster every moderation script touches one slot.
--   f:{mod}   hash: kid -> franking key secret       fc:{mod}  hash: kid -> creation second
--   r:{mod}   hash: report id -> report (msgpack)    rr:{mod}  hash: id -> resolution
--   ri:{mod}  zset: every report id by creation      ro:{mod}  zset: open report ids
--   rs:{mod}:<sid hex>  zset: ids filed by one mailbox (the daily allowance; 2-day TTL)
--   au:{mod}  stream: the audit log, entry ids "<seq>-0"; as:{mod}: its sequence counter

-- Append an audit entry. au, as: the stream and its counter; the rest: ts, moderator,
-- action, report id (or ''), detail, key ttl. Returns the entry's sequence number.
local function append_audit(au, as, ts, moderator, action, report_id, detail, ttl)
  local seq = redis.call('INCR', as)
  redis.call('XADD', au, seq .. '-0', 'ts', ts, 'mo', moderator, 'ac', action,
    'ri', report_id, 'de', detail)
  redis.call('EXPIRE', au, ttl)
  redis.call('EXPIRE', as, ttl)
  return seq
end

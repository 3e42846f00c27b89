-- Append an audit entry. KEYS: au, as. ARGV: ts, moderator, action, report id (or ''),
-- detail, keys ttl. Returns its sequence number. (The log has no update or delete script:
-- only the purge trims entries past their retention.)
return append_audit(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])

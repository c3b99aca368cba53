-- The periodic sweep of one subscription (rater.service.sessions.SessionSweeper): release
-- its sessions whose deadline has come.
-- KEYS[1]: subscription hash. ARGV: now_ms, session keep ms, sweep limit.
-- Returns {expired by validity, expired by CDR wait, earliest deadline left ('' none)}.
local base = base_of(KEYS[1])
local expired_validity, expired_wait = sweep_sessions(KEYS[1], base, tonumber(ARGV[1]),
  tonumber(ARGV[2]), tonumber(ARGV[3]))
return {expired_validity, expired_wait, earliest_deadline(base)}

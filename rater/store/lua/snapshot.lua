-- A subscription's plan and its counters for the period holding ARGV[1] (ms), after the
-- sweep of its expired sessions (so the reservations read are the live ones).
-- KEYS[1]: subscription hash. ARGV: at_ms, now_ms, session keep ms, sweep limit.
-- Returns false when unknown, else {period, period_end_ms, plan field/value list,
-- counter field/value list, expired by validity, expired by CDR wait}.
local sub = load_subscription(KEYS[1])
if not sub then return false end
local base = base_of(KEYS[1])
local expired_validity, expired_wait = sweep_sessions(KEYS[1], base, tonumber(ARGV[2]),
  tonumber(ARGV[3]), tonumber(ARGV[4]))
local period, end_ms = period_of(tonumber(ARGV[1]), sub.anchor)
return {period, string.format('%d', end_ms), redis.call('HGETALL', KEYS[1]),
  redis.call('HGETALL', base .. 'p:' .. period), expired_validity, expired_wait}

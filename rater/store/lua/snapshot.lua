-- A subscription's plan and its counters for the period holding ARGV[1] (ms), after the
-- sweep of its expired sessions (so the reservations read are the live ones), and, for a
-- user, that user's spend limit and what counts against it in the period (SPEC 14).
-- KEYS[1]: subscription hash. ARGV: at_ms, now_ms, session keep ms, sweep limit, user id
-- ('' none).
-- Returns false when unknown, else {period, period_end_ms, plan field/value list,
-- counter field/value list, expired by validity, expired by CDR wait, spend} where spend
-- is {limit, spent, reserved} (micro-units, as text) when the user has a limit, else {}.
local sub = load_subscription(KEYS[1])
if not sub then return false end
local base = base_of(KEYS[1])
local expired_validity, expired_wait = sweep_sessions(KEYS[1], base, tonumber(ARGV[2]),
  tonumber(ARGV[3]), tonumber(ARGV[4]))
local period, end_ms = period_of(tonumber(ARGV[1]), sub.anchor)
local spend = {}
local user = ARGV[5]
if user ~= '' then
  local limit = redis.call('HGET', base .. 'lim', 'l:' .. user)
  if limit then
    local v = redis.call('HMGET', base .. 'u:' .. period, user .. '|$', user .. '|r$')
    spend = {limit, v[1] or '0', v[2] or '0'}
  end
end
return {period, string.format('%d', end_ms), redis.call('HGETALL', KEYS[1]),
  redis.call('HGETALL', base .. 'p:' .. period), expired_validity, expired_wait, spend}

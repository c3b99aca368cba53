-- Read-only: a subscription's plan and its counters for the period holding ARGV[1] (ms).
-- KEYS[1]: subscription hash. Returns false when unknown, else
-- {period, period_end_ms, plan field/value list, counter field/value list}.
local sub = load_subscription(KEYS[1])
if not sub then return false end
local period, end_ms = period_of(tonumber(ARGV[1]), sub.anchor)
return {period, string.format('%d', end_ms), redis.call('HGETALL', KEYS[1]),
  redis.call('HGETALL', base_of(KEYS[1]) .. 'p:' .. period)}

-- After the sweep of a claimed subscription: look again at its earliest deadline, or forget
-- it when it has no session left and no session request registered one meanwhile.
-- KEYS[1]: the registry. ARGV: subscription_id, the claim (ms), earliest deadline ('' none).
-- Returns 1 when it stays registered, 0 when it was removed.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[1], 'LT', ARGV[3], ARGV[1])
  return 1
end
if score and tonumber(score) == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
return 1

-- Claim a due subscription of the sweeper's registry, so one worker sweeps it at a time.
-- KEYS[1]: the registry. ARGV: subscription_id, the score it was seen with, the claim (ms).
-- The claim lies beyond every deadline a session request can register meanwhile
-- (rater.service.sessions, CLAIM_MARGIN_MS), so such a registration always lowers it.
-- Returns 1 when claimed, 0 when the score changed since it was seen (claimed by another
-- worker, or lowered by a session request).
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1

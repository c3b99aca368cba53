-- The terminate of a credit-control session (SPEC 11.5): the used seconds stay reserved
-- until the call's CDR is rated (rate_batch.lua releases them), or until the CDR wait ends.
-- KEYS[1]: subscription hash. ARGV: session_id, used_s, request_number ('' none), now_ms,
--   CDR wait s, session keep ms, sweep limit.
-- Returns as session_update.lua.
local sub_key = KEYS[1]
local sid = ARGV[1]
local used = tonumber(ARGV[2])
local number_text = ARGV[3]
local now = tonumber(ARGV[4])
local cdr_wait = tonumber(ARGV[5])
local keep, limit = tonumber(ARGV[6]), tonumber(ARGV[7])

local open, ended = open_follow_up('t', sub_key, sid, number_text, used, now)
if not open then return ended end
local base, key, s, highest = open.base, open.key, open.s, open.highest

if s.st == 'f' then
  local answer = answer_text('p', nil, true, 0, 'free', now)
  redis.call('HSET', key, 'st', 'e', 'used', used, 'rn', highest, 'arn', number_text,
    'k', 't', 'ans', answer, 'term', '1', 'gone', int_text(now + keep))
  redis.call('PEXPIRE', key, keep)
  return {'ok', answer, 0, 0, ''}
end
if s.st == 'c' then
  -- its CDR came first and released it: nothing to hold; the terminate is only recorded,
  -- so a retry gets this answer and a second terminate is refused like any other
  local answer = answer_text('p', used, true, 0, 'terminated', now)
  redis.call('HSET', key, 'rn', highest, 'arn', number_text, 'k', 't', 'ans', answer,
    'term', '1')
  return {'ok', answer, 0, 0, ''}
end

-- open
local sub = load_subscription(sub_key)
if not sub then return {'refused', 'unknown_session', '', ''} end -- subscriptions never go
local expired_validity, expired_wait = sweep_sessions(sub_key, base, now, keep, limit)
local _, included, used_included, reserved_all = session_pool(sub, base, s.per, s.z)
local available = included - used_included - reserved_all + s.res
local reserved = held_seconds(used, available, sub.payg, sub.inc_m, sub.inc_i)
-- its amount re-priced to what the used seconds can cost (SPEC 14: SpendTerms.held)
local amount = spend_held(spend_terms(base, s.per, s.u, sub['rmu_' .. s.z], s.ra), reserved,
  available)
session_reserve(sub_key, base, s, reserved - s.res, amount - s.ra)
add_or_drop(sub_key, 's:o', -1) -- still reserving: 's:n' stays
local deadline = now + cdr_wait * 1000
local answer = answer_text('p', used, true, 0, 'terminated', now)
redis.call('HSET', key, 'st', 't', 'used', used, 'res', reserved, 'ra', int_text(amount),
  'rn', highest, 'arn', number_text, 'k', 't', 'ans', answer, 'term', '1',
  'dl', int_text(deadline))
redis.call('ZADD', base .. 'sx', deadline, sid)
local register = ''
if deadline < s.dl then register = int_text(deadline) end
return {'ok', answer, expired_validity, expired_wait, register}

-- An update of a credit-control session (SPEC 11): report use, extend the grant.
-- KEYS[1]: subscription hash. ARGV: session_id, used_s, requested_s, request_number ('' none),
--   now_ms, validity_s, grace_s, session keep ms, sweep limit.
-- Returns {'ok', answer, expired by validity, expired by CDR wait, deadline to register
--   ('' when not earlier than the one it replaces)}, {'replay', stored answer} or
--   {'refused', code, got, before}; a refused request or a replay writes nothing.
local sub_key = KEYS[1]
local sid = ARGV[1]
local used = tonumber(ARGV[2])
local requested = tonumber(ARGV[3])
local number_text = ARGV[4]
local now = tonumber(ARGV[5])
local validity, grace = tonumber(ARGV[6]), tonumber(ARGV[7])
local keep, limit = tonumber(ARGV[8]), tonumber(ARGV[9])

local open, ended = open_follow_up('u', sub_key, sid, number_text, used, now)
if not open then return ended end
local base, key, s, highest = open.base, open.key, open.s, open.highest

if s.st == 'f' then
  local answer = answer_text('p', nil, false, validity, 'free', now + validity * 1000)
  local gone = now + (validity + grace) * 1000 + keep
  redis.call('HSET', key, 'used', used, 'rn', highest, 'arn', number_text, 'k', 'u',
    'ans', answer, 'gone', int_text(gone))
  redis.call('PEXPIRE', key, gone - now)
  return {'ok', answer, 0, 0, ''}
end

-- open: every other state was refused above
local sub = load_subscription(sub_key)
if not sub then return {'refused', 'unknown_session', '', ''} end -- subscriptions never go
local expired_validity, expired_wait = sweep_sessions(sub_key, base, now, keep, limit)
local _, included, used_included, reserved_all = session_pool(sub, base, s.per, s.z)
local available = included - used_included - reserved_all + s.res
local spend = spend_terms(base, s.per, s.u, sub['rmu_' .. s.z], s.ra)
local _, authorised, reserved, final, reason, amount = session_grant(
  false, used, requested, available, sub.payg, sub.inc_m, sub.inc_i, spend)
session_reserve(sub_key, base, s, reserved - s.res, amount - s.ra)
local deadline = now + (validity + grace) * 1000
local answer = answer_text('p', authorised, final, validity, reason, now + validity * 1000)
redis.call('HSET', key, 'val', validity, 'auth', authorised, 'used', used, 'res', reserved,
  'ra', int_text(amount), 'rn', highest, 'arn', number_text, 'k', 'u', 'ans', answer,
  'dl', int_text(deadline))
redis.call('ZADD', base .. 'sx', deadline, sid)
local register = ''
if deadline < s.dl then register = int_text(deadline) end
return {'ok', answer, expired_validity, expired_wait, register}

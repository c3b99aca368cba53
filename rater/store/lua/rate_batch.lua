-- Rate a batch of CDRs atomically (SPEC 5): dedupe, split, counters, thresholds.
-- KEYS: subscription hash keys of the batch (all in one hash slot on a cluster).
-- ARGV: now_ms, grace_ms, future_ms, rated_at_ms, keep_ms, session keep ms (keys.py
--   SESSION_KEEP_MS), then ONE JSON array with one
--   array of 7 fields per CDR (one argument, so a batch costs no per-field argument work):
--   key index (into KEYS), call_id, fingerprint, user_id, started_at_ms, duration_s,
--   kind = zone ('d'|'i') .. direction ('o'|'i') .. emergency ('0'|'1').
-- Returns ONE JSON array (cjson) holding one array per CDR, in order:
--   {'x', reason, detail}                                           rejected
--   {'n'|'d', period, billable, included, overage, unbilled, outcome, amount_micro,
--    rated_at_ms, rate, billing_account_id, currency, session, n_alerts,
--    then per alert: zone, threshold, used_included_s, included_s, at_ms}   new | duplicate
--   where session says what a new CDR did to the session whose id is its call_id (SPEC
--   11.5): 0 nothing, 1 closed it (released its reservation), 2 / 3 found it past its
--   deadline and released it as expired by validity / by CDR wait. A duplicate: always 0.
-- Every number in it is an integer below 2^53 (cjson writes up to 14 significant digits;
-- the largest, a pool of 100000 licences x 100000 minutes x 60, has 12).
--
-- Keys per subscription (hash tag {id}): sub (plan), p:<period> (counters and alert
-- flags), u:<period> (per-user seconds, and the user's overage amount `<user>|$` that a
-- spend limit is weighed against), c:<YYYYMM of started_at> (rated calls; a
-- duplicate is looked for in the start month and the months either side).
-- A rated call is stored as
--   fingerprint|period|billable|included|overage|unbilled|outcome|amount_micro|rated_at|rate
-- and an alert flag as used_included_s|included_s|at_ms|call_id.

local now_ms = tonumber(ARGV[1])
local grace_ms = tonumber(ARGV[2])
local future_ms = tonumber(ARGV[3])
local rated_at = ARGV[4]
local keep_ms = tonumber(ARGV[5])
local session_keep_ms = tonumber(ARGV[6])
local ZONE = {d = 'domestic', i = 'international'}
local OUTCOME = {i = 'included', o = 'overage', e = 'exhausted', b = 'blocked', f = 'free'}
local THRESHOLDS = {80, 100}

-- Hot-path performance notes (Redis runs this single threaded, up to 1000 CDRs a call):
-- each redis.call is the dominant cost, then Lua's number -> text conversion (a sprintf
-- each time), then building/interning strings. So names and texts that depend only on a
-- zone, a day or a number are built once per batch and reused.
local call = redis.call
local tostring = tostring

-- Field names of one zone, so the hot path never concatenates them per CDR.
local ZONE_FIELDS = setmetatable({}, {__index = function(t, z)
  local f = {used = z .. ':used', over = z .. ':over', amt = z .. ':amt', unb = z .. ':unb',
    min = 'min_' .. z, rate = 'rate_' .. z, rmu = 'rmu_' .. z, user = '|' .. z, flags = {}}
  for j, th in ipairs(THRESHOLDS) do f.flags[j] = 'a:' .. z .. ':' .. th end
  t[z] = f
  return f
end})

-- A number's text exactly as `..` writes it (tostring and concat share Lua's "%.14g"),
-- memoised: the same few second counts recur all through a batch.
local digits = setmetatable({}, {__index = function(t, n)
  local text = tostring(n)
  if n == n then t[n] = text end
  return text
end})

-- kind -> {zone letter, free?}; there are only a handful of kinds.
local kinds = {}
local function kind_of(kind)
  local hit = kinds[kind]
  if hit == nil then
    hit = {string.sub(kind, 1, 1), string.sub(kind, 2, 2) == 'i' or string.sub(kind, 3, 3) == '1'}
    kinds[kind] = hit
  end
  return hit
end

local subs = {}

-- The plan, as load_subscription reads it, but only the fields of the zones the batch
-- rates: with many subscriptions nearly every CDR loads its own plan, and each field of
-- an HMGET reply costs as much as a third of a call. A subscription's other zone is
-- read on the first CDR that needs it (the plan cannot change during the script).
-- `sessions` counts its open and terminated sessions (keys.SESSIONS_RESERVING_FIELD): only
-- then can a CDR close one, so a subscription without sessions costs no call per CDR.
local function load_plan(key, z)
  local zf = ZONE_FIELDS[z]
  local v = call('HMGET', key, 'ba', 'cur', 'lic', 'payg', 'anchor', 'inc_m', 'inc_i',
    zf.min, zf.rate, zf.rmu, 's:n')
  if not v[1] then return nil end
  local sub = {ba = v[1], cur = v[2], lic = tonumber(v[3]), payg = v[4] == '1',
    anchor = tonumber(v[5]), inc_m = tonumber(v[6]), inc_i = tonumber(v[7]),
    base = base_of(key), zones = {[z] = true},
    sessions = tonumber(v[11]) or 0}
  sub[zf.min] = tonumber(v[8])
  sub[zf.rate] = v[9]
  sub[zf.rmu] = v[10]
  return sub
end

local function plan_zone(sub, key, z)
  if not sub.zones[z] then
    local zf = ZONE_FIELDS[z]
    local v = call('HMGET', key, zf.min, zf.rate, zf.rmu)
    sub[zf.min] = tonumber(v[1])
    sub[zf.rate] = v[2]
    sub[zf.rmu] = v[3]
    sub.zones[z] = true
  end
end

local expiring = {}
local ttl_texts = {}

-- TTLs count from the rating clock (now_ms), not Redis's own, so a key lives until
-- `at_ms` on the clock that decided the CDR was still acceptable (always > now_ms).
-- The TTL text depends only on at_ms (a period or month end): formatted once per batch.
-- NX (Redis >= 7.0): a key's expiry instant never changes (at_ms - now_ms >= keep_ms for
-- every CDR still accepted), so it is set when the key is new; a PEXPIRE that changes
-- nothing is not written to the AOF, and one per key per batch used to be.
local function expire_once(key, at_ms)
  if not expiring[key] then
    expiring[key] = true
    local ttl = ttl_texts[at_ms]
    if ttl == nil then
      ttl = string.format('%d', math.max(at_ms - now_ms, keep_ms))
      ttl_texts[at_ms] = ttl
    end
    call('PEXPIRE', key, ttl, 'NX')
  end
end

local function push_alert(result, zone_letter, t, used, pool, at_ms)
  result[#result + 1] = ZONE[zone_letter]
  result[#result + 1] = t
  result[#result + 1] = used
  result[#result + 1] = pool
  result[#result + 1] = at_ms
  result[14] = result[14] + 1
end

local function answer(status, stored, sub)
  return {status, stored[2], tonumber(stored[3]), tonumber(stored[4]),
    tonumber(stored[5]), tonumber(stored[6]), OUTCOME[stored[7]], stored[8], stored[9],
    stored[10], sub.ba, sub.cur, 0, 0}
end

-- A replay re-emits the alerts its first rating crossed: the flags name the crossing call.
local function replay_alerts(result, counters_key, zone_letter, call_id)
  local flags = ZONE_FIELDS[zone_letter].flags
  for j = 1, #THRESHOLDS do
    local flag = call('HGET', counters_key, flags[j])
    if flag then
      local used, pool, at_ms, who = string.match(flag, '^(%d+)|(%d+)|(%d+)|(.*)$')
      if who == call_id then
        push_alert(result, zone_letter, THRESHOLDS[j], tonumber(used), tonumber(pool), at_ms)
      end
    end
  end
end

-- Calendar arithmetic depends only on the day (and the anchor): memoised per batch,
-- with the key suffixes built from it.
local periods = {}
local function period_cached(started, anchor)
  local slot = math.floor(started / MS_PER_DAY) * 32 + anchor
  local hit = periods[slot]
  if hit == nil then
    local name, end_ms = period_of(started, anchor)
    hit = {name, end_ms, 'p:' .. name, 'u:' .. name}
    periods[slot] = hit
  end
  return hit
end

local months = {}
local function month_cached(started)
  local day = math.floor(started / MS_PER_DAY)
  local hit = months[day]
  if hit == nil then
    local y, m = civil_from_days(day)
    local py, pm = shift_month(y, m, -1)
    local ny, nm = shift_month(y, m, 1)
    local ey, em = shift_month(y, m, 2)
    hit = {string.format('c:%04d%02d', y, m), string.format('c:%04d%02d', py, pm),
      string.format('c:%04d%02d', ny, nm), days_from_civil(ey, em, 1) * MS_PER_DAY}
    months[day] = hit
  end
  return hit
end

-- A rated call's 10 fields in one match (split's parts 1..10 exactly: each capture is
-- the run up to the next '|'); split stays the fallback for anything else.
local STORED = '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)'

-- SPEC 11.5: a new CDR whose call_id is an open or terminated session of its subscription
-- releases that session's reservation, in this same step that adds the call's usage. A
-- session already past its deadline is released as expired instead (what a sweep would
-- have done), and the CDR rates like one without session. Returns the `session` code.
local function close_session(sub_key, sub, call_id)
  local key = sub.base .. 's:' .. call_id
  local v = call('HMGET', key, 'st', 'z', 'per', 'res', 'dl', 'u', 'ra')
  if v[1] ~= 'o' and v[1] ~= 't' then return 0 end
  session_release(sub_key, sub.base, call_id, {st = v[1], z = v[2], per = v[3],
    res = tonumber(v[4]) or 0, u = v[6], ra = tonumber(v[7]) or 0})
  sub.sessions = sub.sessions - 1
  local deadline = tonumber(v[5])
  if deadline and deadline <= now_ms then
    session_close(key, 'x', now_ms, session_keep_ms)
    if v[1] == 'o' then return 2 end
    return 3
  end
  session_close(key, 'c', now_ms, session_keep_ms)
  return 1
end

local results = {}
local batch = cjson.decode(ARGV[7])
for i = 1, #batch do
  local cdr = batch[i]
  local sub_key = KEYS[cdr[1]]
  local call_id = cdr[2]
  local fingerprint = cdr[3]
  local user = cdr[4]
  local started = cdr[5]
  local duration = cdr[6]
  local kind = cdr[7]

  local k = kind_of(kind)
  local zone_letter = k[1]
  local sub = subs[sub_key]
  if sub == nil then
    sub = load_plan(sub_key, zone_letter) or false
    subs[sub_key] = sub
  elseif sub then
    plan_zone(sub, sub_key, zone_letter)
  end
  if not sub then
    local id = string.match(sub_key, '{(.*)}')
    results[i] = {'x', 'unknown_subscription',
      string.format("subscription '%s' is not known", id)}
  elseif started - now_ms > future_ms then
    results[i] = {'x', 'future_timestamp', string.format(
      'started_at is %d s in the future (tolerance %d s)',
      math.floor((started - now_ms) / 1000), math.floor(future_ms / 1000))}
  else
    local per = period_cached(started, sub.anchor)
    local period, end_ms = per[1], per[2]
    if now_ms > end_ms + grace_ms then
      results[i] = {'x', 'period_closed', string.format(
        'period %s closed for late CDRs at %s', period, format_instant(end_ms + grace_ms))}
    else
      local base = sub.base
      local month = month_cached(started)
      local calls_key = base .. month[1]
      -- a call_id is remembered in its start month's bucket; look there, then in the
      -- months either side, so a reused id with a shifted start is still caught
      local seen = call('HGET', calls_key, call_id)
      if not seen then seen = call('HGET', base .. month[2], call_id) end
      if not seen then seen = call('HGET', base .. month[3], call_id) end
      if seen then
        local stored = {string.match(seen, STORED)}
        if stored[1] == nil then stored = split(seen, '|') end
        if stored[1] ~= fingerprint then
          results[i] = {'x', 'conflicting_duplicate', string.format(
            "call_id '%s' was already rated with different content", call_id)}
        else
          local result = answer('d', stored, sub)
          if stored[7] ~= 'f' then
            replay_alerts(result, base .. 'p:' .. stored[2], zone_letter, call_id)
          end
          results[i] = result
        end
      else
        local zf = ZONE_FIELDS[zone_letter]
        local counters_key = base .. per[3]
        local billable = billable_seconds(duration, sub.inc_m, sub.inc_i)
        local included, overage, unbilled, outcome, amount, rate = 0, 0, 0, 'f', '0', ''
        local pool, used = 0, 0
        local crossed -- stays nil unless a threshold is crossed (almost every CDR)
        if not k[2] then
          pool = sub.lic * sub[zf.min] * 60
          used = tonumber(call('HGET', counters_key, zf.used) or '0')
          local remaining = math.max(0, pool - used)
          included = math.min(billable, remaining)
          local excess = billable - included
          if excess == 0 then
            outcome = 'i'
          elseif sub.payg then
            overage, outcome = excess, 'o'
            rate = sub[zf.rate]
            amount = mul_div60_half_up(sub[zf.rmu], overage)
          else
            unbilled = excess
            if remaining > 0 then outcome = 'e' else outcome = 'b' end
          end
          used = used + included
          if included > 0 then call('HINCRBY', counters_key, zf.used, included) end
          if overage > 0 then
            call('HINCRBY', counters_key, zf.over, overage)
            call('HINCRBY', counters_key, zf.amt, amount)
          end
          if unbilled > 0 then call('HINCRBY', counters_key, zf.unb, unbilled) end
          if billable > 0 then
            local users_key = base .. per[4]
            call('HINCRBY', users_key, user .. zf.user, billable)
            -- the user's overage amount, weighed against a spend limit (SPEC 14)
            if overage > 0 then call('HINCRBY', users_key, user .. '|$', amount) end
            expire_once(users_key, end_ms + grace_ms + keep_ms)
          end
          if pool > 0 then
            for j = 1, #THRESHOLDS do
              local t = THRESHOLDS[j]
              if used * 100 >= t * pool then
                local field = zf.flags[j]
                if call('HEXISTS', counters_key, field) == 0 then
                  call('HSET', counters_key, field,
                    string.format('%d|%d|%s|%s', used, pool, rated_at, call_id))
                  if crossed then crossed[#crossed + 1] = t else crossed = {t} end
                end
              end
            end
          end
          expire_once(counters_key, end_ms + grace_ms + keep_ms)
        end
        call('HSET', calls_key, call_id, fingerprint .. '|' .. period .. '|' .. digits[billable]
          .. '|' .. digits[included] .. '|' .. digits[overage] .. '|' .. digits[unbilled] .. '|'
          .. outcome .. '|' .. amount .. '|' .. rated_at .. '|' .. rate)
        expire_once(calls_key, month[4] + grace_ms + keep_ms)
        local session = 0
        if sub.sessions > 0 then session = close_session(sub_key, sub, call_id) end
        local result = {'n', period, billable, included, overage, unbilled, OUTCOME[outcome],
          amount, rated_at, rate, sub.ba, sub.cur, session, 0}
        if crossed then
          for j = 1, #crossed do
            push_alert(result, zone_letter, crossed[j], used, pool, rated_at)
          end
        end
        results[i] = result
      end
    end
  end
end
return cjson.encode(results)

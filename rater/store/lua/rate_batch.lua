-- Rate a batch of CDRs atomically (SPEC 5): dedupe, split, counters, thresholds.
-- KEYS: subscription hash keys of the batch (all in one hash slot on a cluster).
-- ARGV: now_ms, grace_ms, future_ms, rated_at_ms, keep_ms, then ONE JSON array with one
--   array of 7 fields per CDR (one argument, so a batch costs no per-field argument work):
--   key index (into KEYS), call_id, fingerprint, user_id, started_at_ms, duration_s,
--   kind = zone ('d'|'i') .. direction ('o'|'i') .. emergency ('0'|'1').
-- Returns ONE JSON array (cjson) holding one array per CDR, in order:
--   {'x', reason, detail}                                           rejected
--   {'n'|'d', period, billable, included, overage, unbilled, outcome, amount_micro,
--    rated_at_ms, rate, billing_account_id, currency, n_alerts,
--    then per alert: zone, threshold, used_included_s, included_s, at_ms}   new | duplicate
-- Every number in it is an integer below 2^53 (cjson writes up to 14 significant digits;
-- the largest, a pool of 100000 licences x 100000 minutes x 60, has 12).
--
-- Keys per subscription (hash tag {id}): sub (plan), p:<period> (counters and alert
-- flags), u:<period> (per-user seconds), c:<YYYYMM of started_at> (rated calls; a
-- duplicate is looked for in the start month and the months either side).
-- A rated call is stored as
--   fingerprint|period|billable|included|overage|unbilled|outcome|amount_micro|rated_at|rate
-- and an alert flag as used_included_s|included_s|at_ms|call_id.

local now_ms = tonumber(ARGV[1])
local grace_ms = tonumber(ARGV[2])
local future_ms = tonumber(ARGV[3])
local rated_at = ARGV[4]
local keep_ms = tonumber(ARGV[5])
local ZONE = {d = 'domestic', i = 'international'}
local OUTCOME = {i = 'included', o = 'overage', e = 'exhausted', b = 'blocked', f = 'free'}
local THRESHOLDS = {80, 100}

local subs = {}
local expiring = {}

-- TTLs count from the rating clock (now_ms), not Redis's own, so a key lives until
-- `at_ms` on the clock that decided the CDR was still acceptable (always > now_ms).
local function expire_once(key, at_ms)
  if not expiring[key] then
    expiring[key] = true
    redis.call('PEXPIRE', key, string.format('%d', math.max(at_ms - now_ms, keep_ms)))
  end
end

local function push_alert(result, zone_letter, t, used, pool, at_ms)
  result[#result + 1] = ZONE[zone_letter]
  result[#result + 1] = t
  result[#result + 1] = used
  result[#result + 1] = pool
  result[#result + 1] = at_ms
  result[13] = result[13] + 1
end

local function answer(status, stored, sub)
  return {status, stored[2], tonumber(stored[3]), tonumber(stored[4]),
    tonumber(stored[5]), tonumber(stored[6]), OUTCOME[stored[7]], stored[8], stored[9],
    stored[10], sub.ba, sub.cur, 0}
end

-- A replay re-emits the alerts its first rating crossed: the flags name the crossing call.
local function replay_alerts(result, counters_key, zone_letter, call_id)
  for _, t in ipairs(THRESHOLDS) do
    local flag = redis.call('HGET', counters_key, 'a:' .. zone_letter .. ':' .. t)
    if flag then
      local used, pool, at_ms, who = string.match(flag, '^(%d+)|(%d+)|(%d+)|(.*)$')
      if who == call_id then
        push_alert(result, zone_letter, t, tonumber(used), tonumber(pool), at_ms)
      end
    end
  end
end

-- Calendar arithmetic depends only on the day (and the anchor): memoised per batch.
local periods = {}
local function period_cached(started, anchor)
  local slot = math.floor(started / MS_PER_DAY) * 32 + anchor
  local hit = periods[slot]
  if hit == nil then
    local name, end_ms = period_of(started, anchor)
    hit = {name, end_ms}
    periods[slot] = hit
  end
  return hit[1], hit[2]
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
    hit = {string.format('%04d%02d', y, m), string.format('%04d%02d', py, pm),
      string.format('%04d%02d', ny, nm), days_from_civil(ey, em, 1) * MS_PER_DAY}
    months[day] = hit
  end
  return hit
end

local results = {}
local batch = cjson.decode(ARGV[6])
for i = 1, #batch do
  local cdr = batch[i]
  local sub_key = KEYS[cdr[1]]
  local call_id = cdr[2]
  local fingerprint = cdr[3]
  local user = cdr[4]
  local started = cdr[5]
  local duration = cdr[6]
  local kind = cdr[7]

  local sub = subs[sub_key]
  if sub == nil then
    sub = load_subscription(sub_key) or false
    subs[sub_key] = sub
  end
  if not sub then
    local id = string.match(sub_key, '{(.*)}')
    results[#results + 1] = {'x', 'unknown_subscription',
      string.format("subscription '%s' is not known", id)}
  elseif started - now_ms > future_ms then
    results[#results + 1] = {'x', 'future_timestamp', string.format(
      'started_at is %d s in the future (tolerance %d s)',
      math.floor((started - now_ms) / 1000), math.floor(future_ms / 1000))}
  else
    local period, end_ms = period_cached(started, sub.anchor)
    if now_ms > end_ms + grace_ms then
      results[#results + 1] = {'x', 'period_closed', string.format(
        'period %s closed for late CDRs at %s', period, format_instant(end_ms + grace_ms))}
    else
      local base = base_of(sub_key)
      local month = month_cached(started)
      local calls_key = base .. 'c:' .. month[1]
      local zone_letter = string.sub(kind, 1, 1)
      -- a call_id is remembered in its start month's bucket; look there, then in the
      -- months either side, so a reused id with a shifted start is still caught
      local seen = redis.call('HGET', calls_key, call_id)
      if not seen then seen = redis.call('HGET', base .. 'c:' .. month[2], call_id) end
      if not seen then seen = redis.call('HGET', base .. 'c:' .. month[3], call_id) end
      if seen then
        local stored = split(seen, '|')
        if stored[1] ~= fingerprint then
          results[#results + 1] = {'x', 'conflicting_duplicate', string.format(
            "call_id '%s' was already rated with different content", call_id)}
        else
          local result = answer('d', stored, sub)
          if stored[7] ~= 'f' then
            replay_alerts(result, base .. 'p:' .. stored[2], zone_letter, call_id)
          end
          results[#results + 1] = result
        end
      else
        local counters_key = base .. 'p:' .. period
        local users_key = base .. 'u:' .. period
        local billable = billable_seconds(duration, sub.inc_m, sub.inc_i)
        local included, overage, unbilled, outcome, amount, rate = 0, 0, 0, 'f', '0', ''
        local free = string.sub(kind, 2, 2) == 'i' or string.sub(kind, 3, 3) == '1'
        local pool, used = 0, 0
        local crossed = {}
        if not free then
          pool = sub.lic * sub['min_' .. zone_letter] * 60
          used = tonumber(redis.call('HGET', counters_key, zone_letter .. ':used') or '0')
          local remaining = math.max(0, pool - used)
          included = math.min(billable, remaining)
          local excess = billable - included
          if excess == 0 then
            outcome = 'i'
          elseif sub.payg then
            overage, outcome = excess, 'o'
            rate = sub['rate_' .. zone_letter]
            amount = mul_div60_half_up(sub['rmu_' .. zone_letter], overage)
          else
            unbilled = excess
            if remaining > 0 then outcome = 'e' else outcome = 'b' end
          end
          used = used + included
          if included > 0 then redis.call('HINCRBY', counters_key, zone_letter .. ':used', included) end
          if overage > 0 then
            redis.call('HINCRBY', counters_key, zone_letter .. ':over', overage)
            redis.call('HINCRBY', counters_key, zone_letter .. ':amt', amount)
          end
          if unbilled > 0 then redis.call('HINCRBY', counters_key, zone_letter .. ':unb', unbilled) end
          if billable > 0 then
            redis.call('HINCRBY', users_key, user .. '|' .. zone_letter, billable)
            expire_once(users_key, end_ms + grace_ms + keep_ms)
          end
          if pool > 0 then
            for _, t in ipairs(THRESHOLDS) do
              if used * 100 >= t * pool then
                local field = 'a:' .. zone_letter .. ':' .. t
                if redis.call('HEXISTS', counters_key, field) == 0 then
                  redis.call('HSET', counters_key, field,
                    string.format('%d|%d|%s|%s', used, pool, rated_at, call_id))
                  crossed[#crossed + 1] = t
                end
              end
            end
          end
          expire_once(counters_key, end_ms + grace_ms + keep_ms)
        end
        redis.call('HSET', calls_key, call_id, table.concat({fingerprint, period, billable,
          included, overage, unbilled, outcome, amount, rated_at, rate}, '|'))
        expire_once(calls_key, month[4] + grace_ms + keep_ms)
        local result = {'n', period, billable, included, overage, unbilled, OUTCOME[outcome],
          amount, rated_at, rate, sub.ba, sub.cur, 0}
        for _, t in ipairs(crossed) do
          push_alert(result, zone_letter, t, used, pool, rated_at)
        end
        results[#results + 1] = result
      end
    end
  end
end
return cjson.encode(results)

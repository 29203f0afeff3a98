-- tenantgate: admission of one request (src/ratelimit/redis.rs).
-- KEYS[1] token budget, KEYS[2] tenant GCRA, KEYS[3] (tenant, user) GCRA.
-- ARGV[1] tenant period (µs), ARGV[2] tenant burst, ARGV[3] tokens_per_minute
-- (0 = unlimited), ARGV[4] user period (µs, 0 = no per-user limit),
-- ARGV[5] user burst.
-- Returns {0, 0} admitted, or {1 budget | 2 user | 3 tenant, µs to wait}.
-- Nothing is written unless every check passes.
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = 60000000

-- 1. Token budget: the key holds the time (µs) the bucket is full again;
--    admitted while that is less than a window away.
if tonumber(ARGV[3]) > 0 then
  local zero_at = tonumber(redis.call('GET', KEYS[1]) or '0') - window
  if now <= zero_at then
    return {1, zero_at - now + 1}
  end
end

-- GCRA: the key holds the theoretical arrival time (µs). Returns the new one,
-- or nil and the wait until a cell is free.
local function gcra(key, period, burst)
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local new_tat = tat + period
  local wait = new_tat - now - period * burst
  if wait > 0 then return nil, wait end
  return new_tat, 0
end

-- 2. Per-user GCRA, then 3. the tenant's.
local user_period = tonumber(ARGV[4])
local user_tat
if user_period > 0 then
  local wait
  user_tat, wait = gcra(KEYS[3], user_period, tonumber(ARGV[5]))
  if not user_tat then return {2, math.ceil(wait)} end
end
local tenant_tat, wait = gcra(KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]))
if not tenant_tat then return {3, math.ceil(wait)} end

-- Admitted: store both; each key expires when its bucket is full again, so
-- an idle tenant leaves nothing behind.
local function store(key, tat)
  redis.call('SET', key, string.format('%.0f', tat), 'PX', string.format('%.0f', math.ceil((tat - now) / 1000)))
end
store(KEYS[2], tenant_tat)
if user_tat then store(KEYS[3], user_tat) end
return {0, 0}

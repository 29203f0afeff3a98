-- tenantgate: charges a response's tokens to the tenant's budget
-- (src/ratelimit/redis.rs). KEYS[1] token budget; ARGV[1] cost (µs of refill).
-- The key holds the time (µs) the bucket is full again and expires then.
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local full_at = tonumber(redis.call('GET', KEYS[1]) or '0')
if full_at < now then full_at = now end
full_at = full_at + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.0f', full_at), 'PX', string.format('%.0f', math.ceil((full_at - now) / 1000)))
return 0

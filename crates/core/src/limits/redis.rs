//! The shared store: every bucket in Redis, every check one `EVALSHA` of a Lua script
//! (atomic in Redis, one round trip), timed by the Redis server's own clock so
//! replicas with skewed clocks still share one limit.
//!
//! Rates are a GCRA state (the theoretical arrival time, in microseconds) in a string
//! key that expires when the bucket is full again. Concurrency slots are a sorted set of
//! request ids scored by when they were taken; a slot is given back by `ZREM`, and one
//! whose replica died is dropped after [`SLOT_LEASE`].

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::{BucketState, Decision, LimitStore, StoreError, Take, TakeKind};

/// How long a concurrency slot counts if its request never releases it (its replica
/// died): longer than any request's deadline.
pub const SLOT_LEASE: Duration = Duration::from_secs(600);

/// Every key this store writes starts with this.
pub const KEY_PREFIX: &str = "modelway:limit:";

const CHECK: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = 60000000
local lease = tonumber(ARGV[1])
local n = #KEYS
local denied = 0
local wait = 0
local pending = {}
local out = {}
local function rate_state(tat, limit, iv)
  local ahead = math.max(tat - now, 0)
  local rem = math.floor(math.max(window - ahead, 0) / iv)
  if rem > limit then rem = limit end
  return rem, ahead
end
for i = 1, n do
  local b = 1 + (i - 1) * 4
  local kind = ARGV[b + 1]
  local a = tonumber(ARGV[b + 2])
  local cost = tonumber(ARGV[b + 3])
  if kind == 's' then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - lease)
    local held = redis.call('ZCARD', KEYS[i])
    if held >= a then
      if denied == 0 then denied = i; wait = 1000000 end
      out[i] = {a, 0, 0}
    else
      out[i] = {a, a - held - 1, 0}
      pending[i] = ARGV[b + 4]
    end
  else
    local iv = math.max(math.floor(window / a), 1)
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    local new_tat = math.max(tat, now) + math.min(cost, a) * iv
    local ahead = new_tat - now
    if ahead > window then
      if denied == 0 then denied = i; wait = ahead - window end
      local rem, reset = rate_state(tat, a, iv)
      out[i] = {a, rem, reset}
    elseif kind == 'r' then
      pending[i] = new_tat
      local rem, reset = rate_state(new_tat, a, iv)
      out[i] = {a, rem, reset}
    else
      local rem, reset = rate_state(tat, a, iv)
      out[i] = {a, rem, reset}
    end
  end
end
if denied == 0 then
  for i = 1, n do
    local v = pending[i]
    if v ~= nil then
      if type(v) == 'number' then
        redis.call('SET', KEYS[i], string.format('%.0f', v), 'PX', math.floor((v - now) / 1000) + 1000)
      else
        redis.call('ZADD', KEYS[i], now, v)
        redis.call('PEXPIRE', KEYS[i], math.floor(lease / 1000) + 1000)
      end
    end
  end
end
local flat = {denied, string.format('%.0f', wait)}
for i = 1, n do
  flat[#flat + 1] = out[i][1]
  flat[#flat + 1] = out[i][2]
  flat[#flat + 1] = string.format('%.0f', out[i][3])
end
return flat
";

const CHARGE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local iv = math.max(math.floor(60000000 / tonumber(ARGV[1])), 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local new_tat = math.min(math.max(tat, now) + tonumber(ARGV[2]) * iv, now + 3600000000)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1000)
return 1
";

/// Counters in Redis, shared by every gateway pointing at the same server.
pub struct RedisStore {
    client: redis::Client,
    timeout: Duration,
    conn: OnceLock<ConnectionManager>,
    check: Script,
    charge: Script,
    /// Slot ids are scoped by this process, so two replicas' request ids never clash.
    process: u64,
    started: Instant,
}

impl RedisStore {
    /// A store for `url` (`redis://[user:password@]host:port/db`). Connects on first
    /// use; each command is bounded by `timeout`.
    pub fn open(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError(format!("bad Redis URL: {:?}", e.kind())))?;
        Ok(Self {
            client,
            timeout,
            conn: OnceLock::new(),
            check: Script::new(CHECK),
            charge: Script::new(CHARGE),
            process: fastrand::u64(..),
            started: Instant::now(),
        })
    }

    fn conn(&self) -> Result<ConnectionManager, StoreError> {
        if let Some(c) = self.conn.get() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            // Reconnects are retried on the next command, not held in a loop.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let c = ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            .map_err(|e| redis_error(&e))?;
        Ok(self.conn.get_or_init(|| c).clone())
    }

    fn key(bucket: &str) -> String {
        format!("{KEY_PREFIX}{bucket}")
    }

    fn slot_id(&self, id: &str) -> String {
        format!("{:016x}:{id}", self.process)
    }

    /// How long this store has been open (for tests of its lease).
    pub fn age(&self) -> Duration {
        self.started.elapsed()
    }
}

/// A Redis error as a store error: its kind and message, never the URL.
fn redis_error(e: &redis::RedisError) -> StoreError {
    StoreError(format!("redis: {e}"))
}

#[async_trait]
impl LimitStore for RedisStore {
    async fn check(&self, takes: &[Take<'_>]) -> Result<Decision, StoreError> {
        let mut conn = self.conn()?;
        let mut inv = self.check.prepare_invoke();
        inv.arg(SLOT_LEASE.as_micros() as u64);
        for t in takes {
            inv.key(Self::key(t.bucket));
            match t.kind {
                TakeKind::Rate { per_minute, cost } => {
                    inv.arg("r").arg(per_minute).arg(cost).arg("");
                }
                TakeKind::Peek { per_minute, cost } => {
                    inv.arg("p").arg(per_minute).arg(cost).arg("");
                }
                TakeKind::Slot { max, id } => {
                    inv.arg("s").arg(max).arg(0).arg(self.slot_id(id));
                }
            }
        }
        let flat: Vec<i64> = inv
            .invoke_async(&mut conn)
            .await
            .map_err(|e| redis_error(&e))?;
        if flat.len() != 2 + 3 * takes.len() {
            return Err(StoreError(format!(
                "the limit script answered {} values for {} buckets",
                flat.len(),
                takes.len()
            )));
        }
        let micros = |v: i64| Duration::from_micros(v.max(0) as u64);
        let denied = flat[0];
        let states = flat[2..]
            .chunks_exact(3)
            .map(|c| BucketState {
                limit: c[0].max(0) as u64,
                remaining: c[1].max(0) as u64,
                reset: micros(c[2]),
            })
            .collect();
        Ok(Decision {
            denied_by: (denied > 0).then(|| (denied - 1) as usize),
            retry_after: (denied > 0).then(|| micros(flat[1])),
            states,
        })
    }

    async fn charge(&self, bucket: &str, per_minute: u64, cost: u64) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let _: i64 = self
            .charge
            .key(Self::key(bucket))
            .arg(per_minute)
            .arg(cost)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| redis_error(&e))?;
        Ok(())
    }

    async fn release(&self, bucket: &str, id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let _: i64 = redis::cmd("ZREM")
            .arg(Self::key(bucket))
            .arg(self.slot_id(id))
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_error(&e))?;
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

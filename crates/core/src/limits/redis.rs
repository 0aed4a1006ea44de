//! The shared store: every bucket in Redis, every check one `EVALSHA` of a Lua script
//! (atomic in Redis, one round trip), timed by the Redis server's own clock so
//! replicas with skewed clocks still share one limit.
//!
//! Rates are a GCRA state (the theoretical arrival time, in microseconds) in a string
//! key that expires when the bucket is full again. Concurrency slots are a sorted set of
//! request ids scored by when they were taken; a slot is given back by `ZREM`, and one
//! whose replica died is dropped after [`SLOT_LEASE`].
//!
//! The connection is one multiplexed connection shared by every check, opened on first
//! use and replaced when it breaks: on an I/O or protocol error at once, and when it has
//! answered nothing for [`STALL`] (a black-holed peer that sends no reset). A failed
//! connect, of any kind (refused, timed out, a wrong password, a server refusing
//! clients), is retried by a later check, at most once per [`RECONNECT_GAP`]; checks in
//! between get its error at once instead of waiting out the timeout. Connects run on
//! their own task, shared by the checks waiting on them, so a check that gives up does
//! not abandon the attempt.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult, Script};

use super::{BucketState, Decision, LimitStore, StoreError, Take, TakeKind};

/// How long a concurrency slot counts if its request never releases it (its replica
/// died): longer than any request's deadline.
pub const SLOT_LEASE: Duration = Duration::from_secs(600);

/// Every key this store writes starts with this.
pub const KEY_PREFIX: &str = "modelway:limit:";

/// The least time between two connect attempts (checks in between get the last
/// attempt's error), so a down or misconfigured Redis is not sent a connection per check.
pub const RECONNECT_GAP: Duration = Duration::from_millis(100);

/// A connection that has answered nothing for this long (or four store timeouts, if
/// longer) while checks waited on it is dropped and a new one opened.
pub const STALL: Duration = Duration::from_secs(1);

/// One check. `ARGV[1]` is the slot lease (µs); then four arguments per key: the kind
/// (`r` rate, `p` peek, `s` slot), the limit, the cost and the slot id. Answers
/// `denied (1-based, 0: allowed), wait (µs), then limit, remaining, reset (µs)` per key.
/// Nothing is written unless every take fits; a denied check reports the buckets as
/// they are (untouched), like the memory store. A bucket named twice in one check
/// counts both takes.
const CHECK: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = 60000000
local lease = tonumber(ARGV[1])
local n = #KEYS
local denied = 0
local wait = 0
local seen = {}
local stored = {}
local writes = {}
local out = {}
local function rate_state(tat, limit, iv)
  local ahead = math.max(tat - now, 0)
  local rem = math.floor(math.max(window - ahead, 0) / iv)
  if rem > limit then rem = limit end
  return rem, ahead
end
for i = 1, n do
  local key = KEYS[i]
  local b = 2 + (i - 1) * 4
  local kind = ARGV[b]
  local a = tonumber(ARGV[b + 1])
  local cost = tonumber(ARGV[b + 2])
  if kind == 's' then
    if seen[key] == nil then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now - lease)
      seen[key] = redis.call('ZCARD', key)
      stored[key] = seen[key]
    end
    local held = seen[key]
    if held >= a then
      if denied == 0 then denied = i; wait = 1000000 end
    elseif denied == 0 then
      seen[key] = held + 1
      writes[#writes + 1] = {key, 's', ARGV[b + 3]}
      out[i] = {a, a - held - 1, 0}
    end
  else
    local iv = math.max(math.floor(window / math.max(a, 1)), 1)
    if seen[key] == nil then
      seen[key] = tonumber(redis.call('GET', key) or '0')
      stored[key] = seen[key]
    end
    local tat = seen[key]
    local new_tat = math.max(tat, now) + math.min(cost, a) * iv
    if new_tat - now > window then
      if denied == 0 then denied = i; wait = new_tat - now - window end
    elseif denied == 0 then
      local state = tat
      if kind == 'r' then
        seen[key] = new_tat
        state = new_tat
        writes[#writes + 1] = {key, 'r', new_tat}
      end
      local rem, reset = rate_state(state, a, iv)
      out[i] = {a, rem, reset}
    end
  end
end
if denied == 0 then
  for _, w in ipairs(writes) do
    if w[2] == 'r' then
      redis.call('SET', w[1], string.format('%.0f', w[3]), 'PX', math.floor((w[3] - now) / 1000) + 1000)
    else
      redis.call('ZADD', w[1], now, w[3])
      redis.call('PEXPIRE', w[1], math.floor(lease / 1000) + 1000)
    end
  end
else
  for i = 1, n do
    local key = KEYS[i]
    local b = 2 + (i - 1) * 4
    local a = tonumber(ARGV[b + 1])
    local v = stored[key]
    if v == nil then
      out[i] = {a, 0, 0}
    elseif ARGV[b] == 's' then
      out[i] = {a, math.max(a - v, 0), 0}
    else
      local rem, reset = rate_state(v, a, math.max(math.floor(window / math.max(a, 1)), 1))
      out[i] = {a, rem, reset}
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

/// An unconditional charge of `ARGV[2]` units at `ARGV[1]` per minute; debt is capped
/// at an hour.
const CHARGE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local iv = math.max(math.floor(60000000 / math.max(tonumber(ARGV[1]), 1)), 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local new_tat = math.min(math.max(tat, now) + tonumber(ARGV[2]) * iv, now + 3600000000)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1000)
return 1
";

/// Counters in Redis, shared by every gateway pointing at the same server.
pub struct RedisStore {
    link: Arc<Link>,
    check: Script,
    charge: Script,
    /// Slot ids are scoped by this process, so two replicas' request ids never clash.
    process: u64,
}

/// The connection to Redis and how a new one is made.
struct Link {
    client: redis::Client,
    config: AsyncConnectionConfig,
    /// The connection in use, if one is open.
    current: ArcSwapOption<Live>,
    /// The connect attempt in flight, or the last one's failure.
    attempt: Mutex<Attempt>,
    /// How long a connection may go unanswered before it is replaced.
    stall: Duration,
    epoch: Instant,
}

type Connecting = Shared<BoxFuture<'static, Result<Arc<Live>, StoreError>>>;

enum Attempt {
    Idle,
    Running(Connecting),
    Failed(Instant, StoreError),
}

/// An open connection.
struct Live {
    conn: MultiplexedConnection,
    /// Nanoseconds after [`Link::epoch`] (at least 1) since which checks on it have gone
    /// unanswered; 0 while it answers.
    unanswered_since: AtomicU64,
}

impl RedisStore {
    /// A store for `url` (`redis://[user:password@]host:port/db`). Connects on first
    /// use; each command is bounded by `timeout`.
    pub fn open(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError(format!("bad Redis URL: {:?}", e.kind())))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        Ok(Self {
            link: Arc::new(Link {
                client,
                config,
                current: ArcSwapOption::empty(),
                attempt: Mutex::new(Attempt::Idle),
                stall: STALL.max(timeout.saturating_mul(4)),
                epoch: Instant::now(),
            }),
            check: Script::new(CHECK),
            charge: Script::new(CHARGE),
            process: fastrand::u64(..),
        })
    }

    fn key(bucket: &str) -> String {
        format!("{KEY_PREFIX}{bucket}")
    }

    fn slot_id(&self, id: &str) -> String {
        format!("{:016x}:{id}", self.process)
    }

    /// The open connection, or a new one (or the last attempt's error, within
    /// [`RECONNECT_GAP`] of it).
    async fn live(&self) -> Result<Arc<Live>, StoreError> {
        if let Some(live) = self.link.current.load_full() {
            return Ok(live);
        }
        let connecting = {
            let mut attempt = self
                .link
                .attempt
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(live) = self.link.current.load_full() {
                return Ok(live);
            }
            match &*attempt {
                Attempt::Running(f) => f.clone(),
                Attempt::Failed(at, e) if at.elapsed() < RECONNECT_GAP => return Err(e.clone()),
                Attempt::Idle | Attempt::Failed(..) => {
                    let f = Link::connect(&self.link)?;
                    *attempt = Attempt::Running(f.clone());
                    f
                }
            }
        };
        connecting.await
    }

    /// Runs one command on the connection, noting how the connection fared.
    async fn run<T, F>(&self, op: impl FnOnce(MultiplexedConnection) -> F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = RedisResult<T>>,
    {
        let live = self.live().await?;
        let mut pending = Pending {
            link: &self.link,
            live: &live,
            done: false,
        };
        let result = op(live.conn.clone()).await;
        pending.done = true;
        self.link.outcome(&live, &result);
        result.map_err(|e| redis_error(&e))
    }
}

impl Link {
    /// Starts a connect attempt on its own task; the future is shared by every check
    /// waiting for it.
    fn connect(link: &Arc<Self>) -> Result<Connecting, StoreError> {
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|_| StoreError("the Redis store needs a Tokio runtime".into()))?;
        let this = link.clone();
        let task = rt.spawn(async move {
            let result = this
                .client
                .get_multiplexed_async_connection_with_config(&this.config)
                .await
                .map(|conn| {
                    Arc::new(Live {
                        conn,
                        unanswered_since: AtomicU64::new(0),
                    })
                })
                .map_err(|e| redis_error(&e));
            let mut attempt = this.attempt.lock().unwrap_or_else(PoisonError::into_inner);
            match &result {
                Ok(live) => {
                    this.current.store(Some(live.clone()));
                    *attempt = Attempt::Idle;
                }
                Err(e) => *attempt = Attempt::Failed(Instant::now(), e.clone()),
            }
            result
        });
        Ok(async move {
            task.await
                .unwrap_or_else(|e| Err(StoreError(format!("connecting to Redis failed: {e}"))))
        }
        .boxed()
        .shared())
    }

    fn now(&self) -> u64 {
        (self.epoch.elapsed().as_nanos() as u64).max(1)
    }

    /// Keeps or drops `live` after a command on it.
    fn outcome<T>(&self, live: &Arc<Live>, result: &RedisResult<T>) {
        match result {
            Ok(_) => live.unanswered_since.store(0, Ordering::Release),
            Err(e) if e.is_timeout() => self.unanswered(live),
            // Broken (reset, closed, garbled, refused on reconnect): replace it now.
            Err(e) if e.is_io_error() || e.is_unrecoverable_error() => self.drop_conn(live),
            // The server answered with an error: the connection works.
            Err(_) => live.unanswered_since.store(0, Ordering::Release),
        }
    }

    /// A command on `live` got no answer in time (or its check gave up): after
    /// [`Self::stall`] of that, the connection is replaced.
    fn unanswered(&self, live: &Arc<Live>) {
        let now = self.now();
        if let Err(since) =
            live.unanswered_since
                .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire)
        {
            if now.saturating_sub(since) >= self.stall.as_nanos() as u64 {
                self.drop_conn(live);
            }
        }
    }

    /// Forgets `live` if it is still the connection in use; the next check connects.
    fn drop_conn(&self, live: &Arc<Live>) {
        let _ = self.current.compare_and_swap(live, None::<Arc<Live>>);
    }
}

/// A command in flight: dropped before it is marked done (its check timed out and gave
/// up), it counts as unanswered.
struct Pending<'a> {
    link: &'a Link,
    live: &'a Arc<Live>,
    done: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.link.unanswered(self.live);
        }
    }
}

/// A Redis error as a store error: its kind and message, never the URL.
fn redis_error(e: &redis::RedisError) -> StoreError {
    StoreError(format!("redis: {e}"))
}

#[async_trait]
impl LimitStore for RedisStore {
    async fn check(&self, takes: &[Take<'_>]) -> Result<Decision, StoreError> {
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
        let flat: Vec<i64> = self
            .run(|mut conn| async move { inv.invoke_async(&mut conn).await })
            .await?;
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
        let mut inv = self.charge.prepare_invoke();
        inv.key(Self::key(bucket)).arg(per_minute).arg(cost);
        let _: i64 = self
            .run(|mut conn| async move { inv.invoke_async(&mut conn).await })
            .await?;
        Ok(())
    }

    async fn release(&self, bucket: &str, id: &str) -> Result<(), StoreError> {
        let cmd = redis::cmd("ZREM")
            .arg(Self::key(bucket))
            .arg(self.slot_id(id))
            .to_owned();
        let _: i64 = self
            .run(|mut conn| async move { cmd.query_async(&mut conn).await })
            .await?;
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

//! Property tests of the dedupe state machine (SPEC §4, `src/dedupe.rs`) against real Redis:
//! random interleavings of `claim_and_book` (the claim production makes, booking its
//! rate-limit slot in the same script, sometimes also beginning the first attempt) /
//! `begin_attempt` / `release` / `complete` by three simulated workers on one key. Workers 0 and 1 hold copies of the same job (a redelivery),
//! worker 2 another job with the same idempotency key.
//!
//! Checked after every step:
//! - never two owners: a claim that wins (`Acquired`/`Resumed`) while another worker holds a
//!   lease that is certainly still live is a double send — unless it is the same job taking
//!   over its own claim on purpose (`take_over_live`), which revokes the earlier owner;
//! - only the latest owner can begin an attempt (a revoked or finished owner cannot);
//! - a key with a terminal record is never claimed again (every claim answers `Done` with that
//!   record), except by `restart_failed` of the job's own `failed` record;
//! - `complete` never overwrites a terminal record: a late one gets the existing record back.
//!
//! Plus the admission that also begins the first attempt (`claim_and_book` with `begin`).

use std::time::{Duration, Instant};

use mensajero::dedupe::{Claim, ClaimRequest, Dedupe, Record};
use mensajero::outcome::Status;
use mensajero::ratelimit::{Limits, Permit, RateLimiter};
use proptest::prelude::*;

use crate::common;

const CHANNEL: &str = "props";
const WORKERS: usize = 3;
const SHORT_LEASE: Duration = Duration::from_millis(40);
const LONG_LEASE: Duration = Duration::from_secs(30);
const WINDOW: Duration = Duration::from_secs(120);

fn job_of(worker: usize) -> &'static str {
    if worker < 2 { "job-a" } else { "job-b" }
}

#[derive(Debug, Clone)]
enum Op {
    Claim {
        worker: usize,
        short_lease: bool,
        take_over_live: bool,
        restart_failed: bool,
        /// Also begin the first attempt when the slot is free now, as the worker does.
        begin: bool,
    },
    BeginAttempt {
        worker: usize,
        short_lease: bool,
    },
    Release {
        worker: usize,
        ambiguous: bool,
    },
    Complete {
        worker: usize,
        failed: bool,
    },
    /// Let short leases run out.
    Wait,
}

fn op() -> impl Strategy<Value = Op> {
    let worker = 0..WORKERS;
    prop_oneof![
        4 => (worker.clone(), any::<bool>(), prop::bool::weighted(0.2), prop::bool::weighted(0.3), any::<bool>()).prop_map(
            |(worker, short_lease, take_over_live, restart_failed, begin)| Op::Claim { worker, short_lease, take_over_live, restart_failed, begin }
        ),
        2 => (worker.clone(), any::<bool>()).prop_map(|(worker, short_lease)| Op::BeginAttempt { worker, short_lease }),
        1 => (worker.clone(), any::<bool>()).prop_map(|(worker, ambiguous)| Op::Release { worker, ambiguous }),
        2 => (worker, any::<bool>()).prop_map(|(worker, failed)| Op::Complete { worker, failed }),
        1 => Just(Op::Wait),
    ]
}

/// What the test knows about a worker's claim.
#[derive(Debug, Clone)]
struct Hold {
    owner: String,
    /// A lower bound of when its lease ends (Redis set it after this process asked).
    live_until: Instant,
    /// A later winning claim or a terminal record took the key from it.
    revoked: bool,
}

/// The test's view of the key.
#[derive(Default)]
struct Model {
    holds: [Option<Hold>; WORKERS],
    /// The owner token of the latest winning claim, if the key is in flight.
    latest_owner: Option<String>,
    /// The job of the latest winning claim.
    latest_job: Option<&'static str>,
    /// The terminal record, once written.
    terminal: Option<Record>,
}

impl Model {
    fn revoke_all(&mut self) {
        for hold in self.holds.iter_mut().flatten() {
            hold.revoked = true;
        }
    }
}

fn record(worker: usize, failed: bool, n: usize) -> Record {
    Record {
        status: if failed { Status::Failed } else { Status::Sent },
        job_id: job_of(worker).to_owned(),
        provider_message_id: (!failed).then(|| format!("msg-{worker}-{n}")),
        error: None,
        attempt: n as u32,
        // Half the sends as fallbacks, so the flag's round trip is part of every check.
        fallback: !failed && n.is_multiple_of(2),
    }
}

/// A rate no step of a case comes near: every admission's slot is free now.
const UNLIMITED: Limits = Limits {
    per_second: 1_000_000,
    burst: 1_000,
    recipient_interval: None,
};

/// One per second, no burst: a channel's first booking is free now, its second waits.
const ONE_PER_SECOND: Limits = Limits {
    per_second: 1,
    burst: 1,
    recipient_interval: None,
};

async fn run(
    dedupe: &Dedupe,
    limiter: &RateLimiter,
    key: &str,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    for (n, op) in ops.iter().enumerate() {
        let step = format!("step {n}: {op:?}");
        match *op {
            Op::Wait => tokio::time::sleep(SHORT_LEASE + Duration::from_millis(10)).await,
            Op::Claim {
                worker,
                short_lease,
                take_over_live,
                restart_failed,
                begin,
            } => {
                let owner = uuid::Uuid::new_v4().to_string();
                let lease = if short_lease { SHORT_LEASE } else { LONG_LEASE };
                let asked = Instant::now();
                let booking = limiter.booking(CHANNEL, "+15550001", &UNLIMITED, LONG_LEASE);
                let request = ClaimRequest {
                    channel: CHANNEL,
                    idempotency_key: key,
                    job_id: job_of(worker),
                    owner: &owner,
                    lease,
                    window: WINDOW,
                    take_over_live,
                    restart_failed,
                };
                let (claim, permit) = dedupe
                    .claim_and_book(&request, &booking, begin)
                    .await
                    .expect("redis");
                let answered = Instant::now();
                // Only a job that may go ahead books a slot, and every slot is free now.
                let goes_ahead = matches!(claim, Claim::Acquired | Claim::Resumed { .. });
                prop_assert_eq!(
                    permit,
                    goes_ahead.then_some(Permit::Now),
                    "{}: {:?}",
                    step,
                    claim
                );
                let restarts = restart_failed
                    && model
                        .terminal
                        .as_ref()
                        .is_some_and(|r| r.status == Status::Failed && r.job_id == job_of(worker));
                if let (Some(terminal), false) = (&model.terminal, restarts) {
                    prop_assert_eq!(&claim, &Claim::Done(terminal.clone()), "{}", step);
                    continue;
                }
                if restarts {
                    prop_assert_eq!(
                        &claim,
                        &Claim::Acquired,
                        "{}: restart of its own failed record",
                        step
                    );
                    model.terminal = None;
                }
                match &claim {
                    Claim::Acquired | Claim::Resumed { .. } => {
                        for (other, hold) in model.holds.iter().enumerate() {
                            let Some(hold) = hold else { continue };
                            if other == worker || hold.revoked || hold.live_until <= answered {
                                continue;
                            }
                            let own_takeover = take_over_live && job_of(other) == job_of(worker);
                            prop_assert!(
                                own_takeover,
                                "{}: won while worker {} holds a live lease ({:?})",
                                step,
                                other,
                                claim
                            );
                        }
                        if matches!(claim, Claim::Resumed { .. }) {
                            prop_assert_eq!(
                                model.latest_job,
                                Some(job_of(worker)),
                                "{}: resumed another job's claim",
                                step
                            );
                        }
                        // A winning claim revokes every earlier one.
                        model.revoke_all();
                        model.holds[worker] = Some(Hold {
                            owner: owner.clone(),
                            live_until: asked + lease,
                            revoked: false,
                        });
                        model.latest_owner = Some(owner);
                        model.latest_job = Some(job_of(worker));
                    }
                    Claim::Busy { job_id, .. } => {
                        prop_assert_eq!(Some(job_id.as_str()), model.latest_job, "{}", step);
                    }
                    Claim::Done(found) => {
                        prop_assert!(
                            false,
                            "{}: Done({:?}) without a terminal record",
                            step,
                            found
                        );
                    }
                    // These properties never cancel.
                    Claim::Cancelled { .. } => {
                        prop_assert!(false, "{}: cancelled without a cancel", step);
                    }
                }
            }
            Op::BeginAttempt {
                worker,
                short_lease,
            } => {
                let Some(hold) = model.holds[worker].clone() else {
                    continue;
                };
                let lease = if short_lease { SHORT_LEASE } else { LONG_LEASE };
                let asked = Instant::now();
                let ok = dedupe
                    .begin_attempt(CHANNEL, key, &hold.owner, lease)
                    .await
                    .expect("redis");
                let owns = model.terminal.is_none()
                    && model.latest_owner.as_deref() == Some(hold.owner.as_str());
                prop_assert_eq!(
                    ok,
                    owns,
                    "{}: only the latest owner begins an attempt",
                    step
                );
                if ok {
                    model.holds[worker] = Some(Hold {
                        live_until: asked + lease,
                        ..hold
                    });
                }
            }
            Op::Release { worker, ambiguous } => {
                let Some(hold) = model.holds[worker].as_mut() else {
                    continue;
                };
                dedupe
                    .release(CHANNEL, key, &hold.owner, ambiguous)
                    .await
                    .expect("redis");
                // The lease is given up; the owner stays (it may begin another attempt).
                hold.live_until = Instant::now();
            }
            Op::Complete { worker, failed } => {
                let mine = record(worker, failed, n);
                let existing = dedupe
                    .complete(CHANNEL, key, &mine, WINDOW)
                    .await
                    .expect("redis");
                match &model.terminal {
                    Some(terminal) => prop_assert_eq!(
                        existing.as_ref(),
                        Some(terminal),
                        "{}: a complete overwrote a terminal record",
                        step
                    ),
                    None => {
                        prop_assert_eq!(existing, None, "{}", step);
                        model.terminal = Some(mine);
                        model.revoke_all();
                        model.latest_owner = None;
                    }
                }
            }
        }
    }
    Ok(())
}

#[test]
fn dedupe_never_has_two_owners_and_never_reopens_a_terminal_key() {
    let services = common::services();
    let prefix = common::unique_prefix("dedupe-props");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (dedupe, limiter) = runtime.block_on(async {
        let client = redis::Client::open(services.redis_url.as_str()).expect("redis url");
        let manager = redis::aio::ConnectionManager::new(client)
            .await
            .expect("redis");
        (
            Dedupe::new(manager.clone(), &prefix),
            RateLimiter::new(manager, &prefix),
        )
    });
    let config = ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let result = proptest::test_runner::TestRunner::new(config).run(
        &prop::collection::vec(op(), 1..24),
        |ops| {
            let key = uuid::Uuid::new_v4().simple().to_string();
            runtime.block_on(run(&dedupe, &limiter, &key, &ops))
        },
    );
    // Clean up whatever the outcome.
    runtime.block_on(async {
        let client = redis::Client::open(services.redis_url.as_str()).expect("redis url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        delete_keys(&mut conn, &prefix).await;
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// `claim_and_book` with `begin` marks the first attempt begun (ambiguous, one attempt: what
/// `begin_attempt` records) only when the job may go ahead *now*; a copy that takes the claim
/// over sees exactly that. Without `begin`, or when the slot is later, nothing is marked.
#[tokio::test]
async fn an_admission_with_a_free_slot_can_begin_the_first_attempt() {
    let (dedupe, limiter, manager, prefix) = stores("dedupe-begin").await;
    let limits = ONE_PER_SECOND;
    let admit = |key, channel, begin| {
        let booking = limiter.booking(channel, "+15550001", &limits, Duration::from_secs(5));
        let dedupe = &dedupe;
        async move {
            dedupe
                .claim_and_book(&request(key, "first", false), &booking, begin)
                .await
                .expect("redis")
        }
    };
    // A redelivered copy taking the claim over reports what the first copy recorded.
    let taken_over = |key| {
        let booking = limiter.booking("ch-c", "+15550002", &UNLIMITED, Duration::from_secs(5));
        let dedupe = &dedupe;
        async move {
            dedupe
                .claim_and_book(&request(key, "second", true), &booking, false)
                .await
                .expect("redis")
                .0
        }
    };

    let (claim, permit) = admit("free-begin", "ch-a", true).await;
    assert_eq!((claim, permit), (Claim::Acquired, Some(Permit::Now)));
    assert_eq!(
        taken_over("free-begin").await,
        Claim::Resumed {
            ambiguous: true,
            previous_attempts: 1
        },
        "a free slot with begin: the first attempt is recorded as begun"
    );

    let (claim, permit) = admit("later-begin", "ch-a", true).await;
    assert_eq!(claim, Claim::Acquired);
    assert!(
        matches!(permit, Some(Permit::After(_))),
        "the channel's second booking within a second waits: {permit:?}"
    );
    assert_eq!(
        taken_over("later-begin").await,
        Claim::Resumed {
            ambiguous: false,
            previous_attempts: 0
        },
        "a slot that is not free now: nothing begun (the caller calls begin_attempt later)"
    );

    let (claim, permit) = admit("free-no-begin", "ch-b", false).await;
    assert_eq!((claim, permit), (Claim::Acquired, Some(Permit::Now)));
    assert_eq!(
        taken_over("free-no-begin").await,
        Claim::Resumed {
            ambiguous: false,
            previous_attempts: 0
        },
        "without begin nothing is marked"
    );

    delete_keys(&mut manager.clone(), &prefix).await;
}

/// A claim whose reply was lost (Redis ran the script, the answer timed out) is asked again
/// by the same attempt, with the same owner token: it gets the answer it had, not `Busy` for
/// its own lease (which made the job wait the whole lease out), and the first attempt it
/// began is not counted twice.
#[tokio::test]
async fn a_claim_asked_again_by_its_own_attempt_gets_the_answer_it_had() {
    let (dedupe, limiter, manager, prefix) = stores("dedupe-again").await;
    let limits = ONE_PER_SECOND;
    let claim = |key: &'static str, owner: &'static str, channel: &'static str, begin: bool| {
        let booking = limiter.booking(channel, "+15550001", &limits, Duration::from_secs(5));
        let dedupe = &dedupe;
        async move {
            // "second" is a redelivered copy of an idempotent gateway's job.
            let request = request(key, owner, owner == "second");
            dedupe
                .claim_and_book(&request, &booking, begin)
                .await
                .expect("redis")
        }
    };

    // Acquired with its first attempt begun: asked again, the same, and still one attempt.
    assert_eq!(
        claim("begun", "first", "ch-a", true).await,
        (Claim::Acquired, Some(Permit::Now))
    );
    assert_eq!(
        claim("begun", "first", "ch-a", true).await,
        (Claim::Acquired, Some(Permit::Now)),
        "the slot the first answer booked is the one it goes on"
    );
    assert_eq!(
        claim("begun", "second", "ch-z", false).await.0,
        Claim::Resumed {
            ambiguous: true,
            previous_attempts: 1
        },
        "the attempt begun once is counted once"
    );
    // The copy that took over loses its reply too: resumed again, with what it found then.
    assert_eq!(
        claim("begun", "second", "ch-z", false).await.0,
        Claim::Resumed {
            ambiguous: true,
            previous_attempts: 1
        }
    );

    // Acquired with its slot later (nothing begun): asked again, it books again.
    let (first, permit) = claim("later", "first", "ch-a", true).await;
    assert_eq!(first, Claim::Acquired);
    assert!(matches!(permit, Some(Permit::After(_))), "{permit:?}");
    let (again, permit) = claim("later", "first", "ch-a", true).await;
    assert_eq!(again, Claim::Acquired);
    assert!(matches!(permit, Some(Permit::After(_))), "{permit:?}");
    assert_eq!(
        claim("later", "second", "ch-z", false).await.0,
        Claim::Resumed {
            ambiguous: false,
            previous_attempts: 0
        },
        "nothing begun"
    );

    // Another attempt of the same job, not allowed to take over, still waits for the lease.
    assert!(
        matches!(
            claim("later", "third", "ch-z", false).await.0,
            Claim::Busy { .. }
        ),
        "only the lease's own owner is answered again"
    );

    delete_keys(&mut manager.clone(), &prefix).await;
}

/// Job "job-a"'s claim of `key` by `owner`, as the admission tests make it.
fn request<'a>(key: &'a str, owner: &'a str, take_over_live: bool) -> ClaimRequest<'a> {
    ClaimRequest {
        channel: CHANNEL,
        idempotency_key: key,
        job_id: "job-a",
        owner,
        lease: LONG_LEASE,
        window: WINDOW,
        take_over_live,
        restart_failed: false,
    }
}

/// A test's dedupe store and rate limiter on the test Redis, under a unique prefix (returned
/// with the connection, for [`delete_keys`]).
async fn stores(name: &str) -> (Dedupe, RateLimiter, redis::aio::ConnectionManager, String) {
    let prefix = common::unique_prefix(name);
    let client = redis::Client::open(common::services().redis_url.as_str()).expect("redis url");
    let manager = redis::aio::ConnectionManager::new(client)
        .await
        .expect("redis");
    (
        Dedupe::new(manager.clone(), &prefix),
        RateLimiter::new(manager.clone(), &prefix),
        manager,
        prefix,
    )
}

/// Delete a test's keys under `prefix` (test prefixes are unique, so `KEYS` stays small).
async fn delete_keys(conn: &mut impl redis::aio::ConnectionLike, prefix: &str) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(conn).await;
    }
}

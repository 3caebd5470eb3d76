//! The workload against the real engine, answers in random order: the money
//! checks stay quiet for a correct server, the storm has its published shape,
//! and a lying server is caught.

use std::collections::VecDeque;

use hongbao_client::answer;
use hongbao_protocol::body::CreateRequest;
use hongbao_protocol::codec::write_response;
use hongbao_protocol::response::Response;
use hongbao_protocol::{decode_frame, Opcode, Request, Status};
use hongbao_server::engine::{Engine, EngineConfig};
use zerocopy::IntoBytes;

use super::*;

fn settings(scenario: Scenario) -> WorkSettings {
    WorkSettings {
        scenario,
        worker: 0,
        in_flight: 64,
        seed: 9,
        query_every: 1_000_000,
        retry_every: 16,
        hot_count: 50,
        hot_users: 200,
        cap_cents: 20_000,
        verify_sample: 16,
    }
}

/// How the test's server lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lie {
    /// It keeps the rules.
    Never,
    /// Every `n`th answer to a first OPEN pays one cent more than it records.
    OpenAmount(usize),
    /// A repeated GRAB of a paid user reserves a second share.
    RepeatGrab,
    /// A repeated OPEN names another amount.
    RepeatOpen,
    /// QUERY's totals are one cent off.
    QueryTotals,
    /// QUERY leaves out the last claim (an acknowledged OPEN lost), totals kept consistent.
    QueryLosesClaim,
    /// A first GRAB pays at once and answers already_grabbed with the amount (no OPEN).
    GrabPays,
    /// A repeated OPEN names the same amount but another order.
    RepeatOrder,
    /// A repeated OPEN answers the first amount but the server pays out one more share.
    RepeatPaysAgain,
    /// Every first GRAB answers expired.
    Expired,
    /// Every first GRAB answers not_found (the envelope was evicted).
    Evicted,
}

/// Answers `tag` from `engine` as the server would, on the wire (so QUERY's
/// claims come back through the client's decoder), lying as told at `step`.
fn serve(engine: &mut Engine, tag: Tag, lie: Lie, step: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let opcode = tag.opcode() as u8;
    match tag.request(3600) {
        Request::Create(body) => {
            let body: CreateRequest = body;
            match engine.create(0, &body) {
                Ok(r) => write_response(&mut out, opcode, 1, Status::Ok, &[r.as_bytes()]),
                Err(status) => write_response(&mut out, opcode, 1, status, &[]),
            }
        }
        Request::Grab(body) => {
            let (mut status, mut r) = engine.grab(0, body.envelope.get(), body.user.get());
            if lie == Lie::GrabPays && status == Status::Ok && matches!(tag, Tag::Grab { again: false, .. }) {
                let (s2, o) = engine.open(0, body.envelope.get(), body.user.get());
                assert_eq!(s2, Status::Ok);
                status = Status::AlreadyGrabbed;
                r.hold_until_ms = 0.into();
                r.amount_cents = o.amount_cents;
            }
            if lie == Lie::RepeatGrab && matches!(tag, Tag::Grab { again: true, .. }) {
                status = Status::Ok;
            }
            if matches!(tag, Tag::Grab { again: false, .. }) {
                match lie {
                    Lie::Expired => status = Status::Expired,
                    Lie::Evicted => status = Status::NotFound,
                    _ => {}
                }
            }
            write_response(&mut out, opcode, 1, status, &[r.as_bytes()]);
        }
        Request::Open(body) => {
            let (status, mut r) = engine.open(0, body.envelope.get(), body.user.get());
            let again = matches!(tag, Tag::Open { again: true, .. });
            let lied = match lie {
                Lie::OpenAmount(n) => !again && step.is_multiple_of(n),
                Lie::RepeatOpen => again,
                _ => false,
            };
            if lied && status == Status::Ok {
                r.amount_cents = (r.amount_cents.get() + 1).into();
            }
            if lie == Lie::RepeatPaysAgain && again && status == Status::Ok {
                let ghost = body.user.get() | (1 << 62);
                if engine.grab(0, body.envelope.get(), ghost).0 == Status::Ok {
                    assert_eq!(engine.open(0, body.envelope.get(), ghost).0, Status::Ok);
                }
            }
            if lie == Lie::RepeatOrder && again && status == Status::Ok {
                r.order = (r.order.get() + 1).into();
            }
            write_response(&mut out, opcode, 1, status, &[r.as_bytes()]);
        }
        Request::Query(body) => {
            match engine.query(0, body.envelope.get(), body.page_start.get(), body.page_limit.get()) {
                Ok((mut q, claims)) => {
                    if lie == Lie::QueryTotals {
                        q.paid_cents = (q.paid_cents.get() + 1).into();
                    }
                    let mut claims = claims;
                    if lie == Lie::QueryLosesClaim
                        && q.paid_count.get() > 0
                        && q.page_len.get() == q.paid_count.get()
                    {
                        let last = claims[claims.len() - 1];
                        claims = &claims[..claims.len() - 1];
                        q.paid_count = (q.paid_count.get() - 1).into();
                        q.page_len = (q.page_len.get() - 1).into();
                        q.paid_cents = (q.paid_cents.get() - last.amount_cents.get()).into();
                        q.remaining_cents = (q.remaining_cents.get() + last.amount_cents.get()).into();
                        if q.best_user.get() == last.user.get() {
                            q.best_user = 0.into();
                            q.best_amount_cents = 0.into();
                        }
                        q.state = 0;
                    }
                    write_response(&mut out, opcode, 1, Status::Ok, &[q.as_bytes(), claims.as_bytes()]);
                }
                Err(status) => write_response(&mut out, opcode, 1, status, &[]),
            }
        }
        Request::Ping => write_response(&mut out, opcode, 1, Status::Ok, &[]),
        other => panic!("the workload sent {other:?}"),
    }
    out
}

/// Runs `steps` steps with up to 64 requests in flight answered out of order.
fn run(scenario: Scenario, steps: usize, lie: Lie) -> (ShardWork, Sent) {
    run_with(&settings(scenario), steps, lie)
}

/// Requests sent: by operation (CREATE, GRAB, OPEN, QUERY, PING), the
/// repeated GRABs and OPENs among them, and the first GRABs sent while
/// another racer's first GRAB of the same envelope was in flight.
#[derive(Debug, Default)]
struct Sent {
    by_op: [u64; 5],
    repeats: u64,
    grabs_beside_a_racer: u64,
}

fn run_with(settings: &WorkSettings, steps: usize, lie: Lie) -> (ShardWork, Sent) {
    run_limited(settings, steps, lie, 64)
}

/// As [`run_with`], with at most `most_in_flight` requests in flight.
fn run_limited(settings: &WorkSettings, steps: usize, lie: Lie, most_in_flight: usize) -> (ShardWork, Sent) {
    let mut engine = Engine::new(EngineConfig { seed: 5, ..EngineConfig::default() });
    let mut work = ShardWork::new(settings, 0);
    let mut rng = fastrand::Rng::with_seed(11);
    let mut in_flight: VecDeque<Tag> = VecDeque::new();
    let mut sent = Sent::default();
    for step in 0..steps {
        if in_flight.len() < most_in_flight && rng.bool() {
            if let Some(tag) = work.next_tag() {
                if let Tag::Grab { envelope, again: false, .. } = tag {
                    let racing =
                        |t: &Tag| matches!(t, Tag::Grab { envelope: e, again: false, .. } if *e == envelope);
                    sent.grabs_beside_a_racer += u64::from(in_flight.iter().any(racing));
                }
                let i = [Opcode::Create, Opcode::Grab, Opcode::Open, Opcode::Query, Opcode::Ping]
                    .iter()
                    .position(|op| *op == tag.opcode())
                    .unwrap();
                sent.by_op[i] += 1;
                if matches!(tag, Tag::Grab { again: true, .. } | Tag::Open { again: true, .. }) {
                    sent.repeats += 1;
                }
                in_flight.push_back(tag);
                continue;
            }
        }
        if in_flight.is_empty() {
            continue;
        }
        let tag = in_flight.swap_remove_back(rng.usize(0..in_flight.len())).unwrap();
        let bytes = serve(&mut engine, tag, lie, step);
        let frame = decode_frame(&bytes).unwrap().unwrap();
        let response = Response::from_frame(&frame).unwrap();
        work.on_answer(tag, &answer::decode_unchecked(tag.opcode(), &response).unwrap());
    }
    if lie == Lie::Never {
        engine.assert_all_invariants();
    }
    (work, sent)
}

#[test]
fn storm_against_a_correct_engine_has_no_violation_and_the_published_shape() {
    let (work, sent) = run(Scenario::Storm, 400_000, Lie::Never);
    assert!(
        work.violations.is_empty(),
        "{:?}",
        &work.violations.messages()[..work.violations.messages().len().min(5)]
    );
    let [creates, grabs, opens, _, _] = sent.by_op;
    assert!(creates > 1_000, "creates {creates}");
    // 6M sent to 48M opened a minute: about eight opens per envelope.
    let opens_per_create = opens as f64 / creates as f64;
    assert!((6.0..=10.0).contains(&opens_per_create), "opens per create {opens_per_create}");
    assert!(grabs > opens, "more racers than shares: some grabs are too late");
    assert!(!work.retired.is_empty(), "envelopes are completed and kept for the final check");
    // Far more envelopes than the sample retired: their racers' arrays went
    // to later envelopes, whose money checks above stayed quiet.
    assert_eq!(work.retired.len(), 16);
    assert!(!work.spare_ledgers.is_empty(), "retired envelopes' arrays are kept for reuse");
    assert!(work.retired.iter().all(|l| l.racers() > 0), "a storm's small arrays are kept as they are");
}

#[test]
fn a_retired_hot_envelope_keeps_only_its_payouts() {
    // A sample of 2, so that ledgers also leave it (about 10 envelopes retire).
    let hot = WorkSettings { hot_users: 5_000, verify_sample: 2, ..settings(Scenario::Hot) };
    let (work, _) = run_with(&hot, 100_000, Lie::Never);
    assert!(work.violations.is_empty(), "{:?}", work.violations.messages().first());
    assert_eq!(work.retired.len(), 2, "hot envelopes were completed and some left the sample");
    for ledger in &work.retired {
        assert_eq!(ledger.racers(), 0, "5,000 racers' array compacted");
        assert_eq!(ledger.paid_count(), 50, "every share of a hot envelope is paid");
    }
    assert!(work.spare_ledgers.is_empty(), "compacted ledgers leave no array to reuse");
    // With no sample the arrays themselves are let go: past SPARE_RACERS_MAX.
    let unsampled = WorkSettings { verify_sample: 0, ..hot };
    let (work, _) = run_with(&unsampled, 100_000, Lie::Never);
    assert!(work.violations.is_empty() && work.retired.is_empty());
    assert!(work.spare_ledgers.is_empty(), "arrays of 5,000 racers are not kept");
    // Small hot envelopes' arrays are reused.
    let small = WorkSettings { hot_users: 200, verify_sample: 0, ..settings(Scenario::Hot) };
    let (work, _) = run_with(&small, 100_000, Lie::Never);
    assert!(work.violations.is_empty());
    assert!(!work.spare_ledgers.is_empty(), "arrays of 200 racers are kept for reuse");
}

#[test]
fn hot_and_micro_scenarios_run_clean() {
    // (The query micro benchmark builds its pool in a setup first: its own test below.)
    for scenario in [Scenario::Hot, Scenario::Grab, Scenario::Open, Scenario::Ping] {
        let (work, sent) = run(scenario, 50_000, Lie::Never);
        assert!(work.violations.is_empty(), "{scenario:?}: {:?}", work.violations.messages().first());
        assert!(sent.by_op.iter().sum::<u64>() > 1_000, "{scenario:?} sent {sent:?}");
    }
}

#[test]
fn the_grab_micro_benchmark_only_grabs() {
    let (work, sent) = run(Scenario::Grab, 50_000, Lie::Never);
    assert!(work.violations.is_empty(), "{:?}", work.violations.messages().first());
    let [creates, grabs, opens, queries, pings] = sent.by_op;
    assert!(creates > 0 && grabs > 10_000, "{sent:?}");
    assert_eq!((opens, queries, pings, sent.repeats), (0, 0, 0, 0), "GRABs only: {sent:?}");
}

#[test]
fn paid_racers_tap_again_and_get_the_same_share() {
    let (work, sent) = run(Scenario::Storm, 200_000, Lie::Never);
    assert!(work.violations.is_empty(), "{:?}", work.violations.messages().first());
    let opens = sent.by_op[2];
    // One paid racer in 16 repeats a GRAB and an OPEN: about 2 in 17 OPENs' worth.
    assert!(sent.repeats > opens / 20 && sent.repeats < opens / 4, "{sent:?}");
    let quiet = WorkSettings { retry_every: 0, ..settings(Scenario::Storm) };
    let (_, sent) = run_with(&quiet, 50_000, Lie::Never);
    assert_eq!(sent.repeats, 0, "--retry-every 0 repeats nothing");
}

#[test]
fn a_server_that_breaks_a_money_rule_is_caught() {
    for (lie, what) in [
        // One cent too many in a share: the envelope's shares no longer sum
        // to its total (or overrun it).
        (Lie::OpenAmount(97), "shares paid but they sum to"),
        (Lie::RepeatGrab, "repeated its GRAB and was answered ok"),
        (Lie::RepeatOpen, "paid twice"),
    ] {
        let (work, _) = run(Scenario::Storm, 100_000, lie);
        assert!(
            work.violations.messages().iter().any(|v| v.contains(what)),
            "{lie:?} went unnoticed: {:?}",
            work.violations.messages().first()
        );
    }
}

#[test]
fn the_storm_queries_now_and_then_and_checks_the_totals() {
    let often = WorkSettings { query_every: 8, ..settings(Scenario::Storm) };
    let (work, sent) = run_with(&often, 100_000, Lie::Never);
    assert!(work.violations.is_empty(), "{:?}", work.violations.messages().first());
    let [_, grabs, _, queries, _] = sent.by_op;
    assert!(queries > grabs / 16 && queries <= grabs / 8 + 1, "one QUERY per 8 GRABs: {sent:?}");
    let (work, _) = run_with(&often, 20_000, Lie::QueryTotals);
    assert!(
        work.violations.messages().iter().any(|v| v.contains("QUERY's totals do not add up")),
        "{:?}",
        work.violations.messages().first()
    );
}

#[test]
fn one_paid_user_in_retry_every_repeats_wherever_it_stands_in_its_group() {
    // Groups of 3 users numbered as the workload numbers them: the first,
    // second and third racers each repeat about one time in 16.
    let first_users = (0..48_000u64).map(|g| (1u64 << USER_SPACE_BITS | 1) + 3 * g);
    let mut by_place = [0u32; 3];
    for first in first_users {
        for (place, n) in by_place.iter_mut().enumerate() {
            *n += u32::from(repeats(first + place as u64, 16));
        }
    }
    for (place, n) in by_place.iter().enumerate() {
        assert!((2_700..3_300).contains(n), "racer {place} repeated {n} times in 48,000 (3,000 expected)");
    }
    assert!((1..1_000).all(|user| !repeats(user, 0)), "0 turns repeats off");
    assert!((1..1_000).all(|user| repeats(user, 1)), "1: every paid user");
}

/// Answers `tag` from `engine` through the wire and the client's decoder.
fn answer_from(engine: &mut Engine, work: &mut ShardWork, tag: Tag) {
    let bytes = serve(engine, tag, Lie::Never, 1);
    let frame = decode_frame(&bytes).unwrap().unwrap();
    let response = Response::from_frame(&frame).unwrap();
    work.on_answer(tag, &answer::decode_unchecked(tag.opcode(), &response).unwrap());
}

#[test]
fn the_query_micro_benchmark_builds_its_pool_before_the_clock_then_only_queries() {
    let mut engine = Engine::new(EngineConfig { seed: 5, ..EngineConfig::default() });
    let mut work = ShardWork::new(&settings(Scenario::Query), 0);
    let mut setup = [0u64; 5];
    while let Some(tag) = work.next_setup_tag() {
        let order = [Opcode::Create, Opcode::Grab, Opcode::Open, Opcode::Query, Opcode::Ping];
        setup[order.iter().position(|op| *op == tag.opcode()).unwrap()] += 1;
        answer_from(&mut engine, &mut work, tag);
        assert!(setup.iter().sum::<u64>() as usize <= SETUP_REQUESTS_MAX, "setup does not end: {setup:?}");
    }
    // One GRAB and one OPEN per claim, and the repeats of about one user in 16.
    let [creates, grabs, opens, queries, pings] = setup;
    let claims = QUERY_POOL as u64 * u64::from(QUERY_PAGE);
    assert_eq!((creates, queries, pings), (QUERY_POOL as u64, 0, 0), "{setup:?}");
    assert_eq!(grabs, opens, "{setup:?}");
    assert!((claims + claims / 32..claims + claims / 8).contains(&grabs), "{setup:?}");
    assert!(work.violations.is_empty(), "{:?}", work.violations.messages().first());
    let pool: Vec<&Ledger> = work.active_ledgers().collect();
    assert_eq!(pool.len(), QUERY_POOL);
    assert!(pool.iter().all(|l| l.paid_count() == QUERY_PAGE as usize), "a page of paid claims in each");
    // The measured period: QUERYs only, each answered with sound totals.
    for _ in 0..1_000 {
        let tag = work.next_tag().expect("a QUERY is always due");
        assert!(matches!(tag, Tag::Query { .. }), "{tag:?}");
        answer_from(&mut engine, &mut work, tag);
    }
    assert!(work.violations.is_empty(), "{:?}", work.violations.messages().first());
    for scenario in [Scenario::Storm, Scenario::Hot, Scenario::Grab, Scenario::Open, Scenario::Ping] {
        assert!(
            ShardWork::new(&settings(scenario), 0).next_setup_tag().is_none(),
            "{scenario:?} has no setup"
        );
    }
}

#[test]
fn the_final_sample_spans_the_run() {
    let (work, _) = run(Scenario::Storm, 400_000, Lie::Never);
    let ids: Vec<u64> = work.retired.iter().map(|l| (l.envelope & ((1 << 48) - 1)) >> 24).collect();
    let created = work.envelopes_created;
    eprintln!("created {created}, sample ids {ids:?}");
    assert!(
        ids.iter().any(|id| *id < created / 2),
        "every sampled envelope is from the last moments of the run"
    );
}

#[test]
fn periodic_query_catches_a_lost_acknowledged_open() {
    let often = WorkSettings { query_every: 8, ..settings(Scenario::Storm) };
    let (work, sent) = run_with(&often, 100_000, Lie::QueryLosesClaim);
    assert!(sent.by_op[3] > 1000, "{sent:?}");
    assert!(!work.violations.is_empty(), "QUERY lost acknowledged opens {} times unnoticed", sent.by_op[3]);
}

#[test]
fn a_second_payout_on_a_repeat_is_caught_during_the_run() {
    let often = WorkSettings { query_every: 8, ..settings(Scenario::Storm) };
    let (work, sent) = run_with(&often, 200_000, Lie::RepeatPaysAgain);
    assert!(sent.repeats > 100, "{sent:?}");
    assert!(!work.violations.is_empty(), "{} repeats each paid an extra share, unnoticed", sent.repeats / 2);
}

#[test]
fn a_grab_that_pays_without_open_is_caught() {
    let (work, _) = run(Scenario::Storm, 100_000, Lie::GrabPays);
    assert!(
        work.violations.messages().iter().any(|v| v.contains("first GRAB was answered already_grabbed")),
        "shares paid on GRAB, no OPEN sent, unnoticed: {:?}",
        work.violations.messages().first()
    );
}

#[test]
fn a_repeated_open_with_another_order_is_caught() {
    let (work, sent) = run(Scenario::Storm, 100_000, Lie::RepeatOrder);
    assert!(sent.repeats > 100);
    assert!(
        work.violations.messages().iter().any(|v| v.contains("told order")),
        "a changed order went unnoticed: {:?}",
        work.violations.messages().first()
    );
}

#[test]
fn racers_stop_at_the_first_expired_or_not_found() {
    let hot = WorkSettings { hot_users: 5_000, ..settings(Scenario::Hot) };
    for lie in [Lie::Expired, Lie::Evicted] {
        let (work, sent) = run_with(&hot, 50_000, lie);
        assert!(work.violations.is_empty(), "{lie:?}: {:?}", work.violations.messages().first());
        let [creates, grabs, ..] = sent.by_op;
        // At most the requests in flight (64) hear it after the first.
        assert!(
            creates > 10 && grabs <= creates * 65,
            "{lie:?}: racers kept grabbing a gone envelope: {sent:?}"
        );
    }
}

#[test]
fn racers_overlap_when_far_fewer_requests_are_in_flight_than_the_depth_allows() {
    // The bench's open loop: 2 connections 1,024 deep, but the schedule keeps
    // only a few requests in flight. Envelopes in play follow those few, so
    // a group's racers still race; from the depth (516 envelopes in play)
    // two racers of one envelope were never in flight together.
    let open_loop = WorkSettings { in_flight: 2_048, ..settings(Scenario::Storm) };
    let (work, sent) = run_limited(&open_loop, 200_000, Lie::Never, 16);
    assert!(work.violations.is_empty(), "{:?}", work.violations);
    let grabs = sent.by_op[1] - sent.repeats / 2;
    assert!(
        sent.grabs_beside_a_racer * 5 > grabs,
        "{} of {grabs} first GRABs went out beside another racer of their envelope",
        sent.grabs_beside_a_racer
    );
    // The closed loop at its depth keeps about one envelope per four requests.
    let (work, sent) = run_with(&settings(Scenario::Storm), 200_000, Lie::Never);
    assert!(work.violations.is_empty(), "{:?}", work.violations);
    assert!(sent.grabs_beside_a_racer * 5 > sent.by_op[1] - sent.repeats / 2);
}

//! The workload against the real engine, answers in random order: the money
//! checks stay quiet for a correct server, the storm has its published shape,
//! and a lying server is caught.

use std::collections::VecDeque;

use hongbao_client::{Answer, AnswerBody, Created, EnvelopeId, Grabbed, Opened};
use hongbao_protocol::body::CreateRequest;
use hongbao_protocol::{Opcode, Request, Status};
use hongbao_server::engine::{Engine, EngineConfig};

use super::*;

fn settings(scenario: Scenario) -> WorkSettings {
    WorkSettings {
        scenario,
        worker: 0,
        in_flight: 64,
        seed: 9,
        query_every: 1_000_000,
        hot_count: 50,
        hot_users: 200,
        cap_cents: 20_000,
        verify_sample: 16,
    }
}

/// Answers `tag` from `engine` as the server would.
fn serve(engine: &mut Engine, tag: Tag, lie: bool) -> (Status, AnswerBody<'static>) {
    match tag.request(3600) {
        Request::Create(body) => {
            let body: CreateRequest = body;
            match engine.create(0, &body) {
                Ok(r) => (
                    Status::Ok,
                    AnswerBody::Create(Some(Created {
                        envelope: EnvelopeId(r.envelope.get()),
                        expires_at_ms: r.expires_at_ms.get(),
                    })),
                ),
                Err(status) => (status, AnswerBody::Create(None)),
            }
        }
        Request::Grab(body) => {
            let (status, r) = engine.grab(0, body.envelope.get(), body.user.get());
            let grabbed = Grabbed {
                hold_until_ms: r.hold_until_ms.get(),
                amount_cents: r.amount_cents.get(),
                shares_free: r.shares_free.get(),
            };
            (status, AnswerBody::Grab(grabbed))
        }
        Request::Open(body) => {
            let (status, r) = engine.open(0, body.envelope.get(), body.user.get());
            let amount = r.amount_cents.get() + u64::from(lie && status == Status::Ok);
            (status, AnswerBody::Open(Opened { amount_cents: amount, order: r.order.get() }))
        }
        Request::Query(_) => (Status::NotFound, AnswerBody::Query(None)),
        Request::Ping => (Status::Ok, AnswerBody::Ping),
        other => panic!("the workload sent {other:?}"),
    }
}

/// Runs `steps` steps with up to 64 requests in flight answered out of order.
fn run(scenario: Scenario, steps: usize, lie_every: usize) -> (ShardWork, [u64; 5]) {
    run_with(&settings(scenario), steps, lie_every)
}

fn run_with(settings: &WorkSettings, steps: usize, lie_every: usize) -> (ShardWork, [u64; 5]) {
    let mut engine = Engine::new(EngineConfig { seed: 5, ..EngineConfig::default() });
    let mut work = ShardWork::new(settings, 0);
    let mut rng = fastrand::Rng::with_seed(11);
    let mut in_flight: VecDeque<Tag> = VecDeque::new();
    let mut sent = [0u64; 5];
    for step in 0..steps {
        if in_flight.len() < 64 && rng.bool() {
            if let Some(tag) = work.next_tag() {
                let i = [Opcode::Create, Opcode::Grab, Opcode::Open, Opcode::Query, Opcode::Ping]
                    .iter()
                    .position(|op| *op == tag.opcode())
                    .unwrap();
                sent[i] += 1;
                in_flight.push_back(tag);
                continue;
            }
        }
        if in_flight.is_empty() {
            continue;
        }
        let tag = in_flight.swap_remove_back(rng.usize(0..in_flight.len())).unwrap();
        let lie = lie_every > 0 && step % lie_every == 0;
        let (status, body) = serve(&mut engine, tag, lie);
        work.on_answer(tag, &Answer { request_id: 1, status, body });
    }
    engine.assert_all_invariants();
    (work, sent)
}

#[test]
fn storm_against_a_correct_engine_has_no_violation_and_the_published_shape() {
    let (work, sent) = run(Scenario::Storm, 400_000, 0);
    assert!(work.violations.is_empty(), "{:?}", &work.violations[..work.violations.len().min(5)]);
    let [creates, grabs, opens, _, _] = sent;
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
    let (work, _) = run_with(&hot, 100_000, 0);
    assert!(work.violations.is_empty(), "{:?}", work.violations.first());
    assert_eq!(work.retired.len(), 2, "hot envelopes were completed and some left the sample");
    for ledger in &work.retired {
        assert_eq!(ledger.racers(), 0, "5,000 racers' array compacted");
        assert_eq!(ledger.paid_count(), 50, "every share of a hot envelope is paid");
    }
    assert!(work.spare_ledgers.is_empty(), "compacted ledgers leave no array to reuse");
    // With no sample the arrays themselves are let go: past SPARE_RACERS_MAX.
    let unsampled = WorkSettings { verify_sample: 0, ..hot };
    let (work, _) = run_with(&unsampled, 100_000, 0);
    assert!(work.violations.is_empty() && work.retired.is_empty());
    assert!(work.spare_ledgers.is_empty(), "arrays of 5,000 racers are not kept");
    // Small hot envelopes' arrays are reused.
    let small = WorkSettings { hot_users: 200, verify_sample: 0, ..settings(Scenario::Hot) };
    let (work, _) = run_with(&small, 100_000, 0);
    assert!(work.violations.is_empty());
    assert!(!work.spare_ledgers.is_empty(), "arrays of 200 racers are kept for reuse");
}

#[test]
fn hot_and_micro_scenarios_run_clean() {
    for scenario in [Scenario::Hot, Scenario::Grab, Scenario::Open, Scenario::Query, Scenario::Ping] {
        let (work, sent) = run(scenario, 50_000, 0);
        assert!(work.violations.is_empty(), "{scenario:?}: {:?}", work.violations.first());
        assert!(sent.iter().sum::<u64>() > 1_000, "{scenario:?} sent {sent:?}");
    }
}

#[test]
fn a_server_that_changes_an_amount_is_caught() {
    let (work, _) = run(Scenario::Storm, 100_000, 97);
    assert!(!work.violations.is_empty(), "a lying server went unnoticed");
}

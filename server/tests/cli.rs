//! `hongbao-cli` against a real server: the JSON contract and exit codes.

mod support;

use std::process::Command;

use serde_json::Value;
use support::{workspace_bin, TestServer};

fn cli(server: &TestServer, args: &[&str]) -> (i32, Value) {
    let output = Command::new(workspace_bin("hongbao-cli"))
        .arg("--server")
        .arg(server.main.to_string())
        .arg("--json")
        .args(args)
        .output()
        .expect("run hongbao-cli");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let json = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout:?}"));
    (output.status.code().unwrap(), json)
}

#[test]
fn create_grab_open_query_through_the_cli() {
    let server = TestServer::start(3, &[]);
    let (code, created) = cli(&server, &["create", "--sender", "42", "--total", "1000", "--count", "3"]);
    assert_eq!((code, created["status"].as_str()), (0, Some("ok")));
    let envelope = created["envelope"].as_u64().unwrap().to_string();
    let mut paid = 0;
    for user in ["7", "8", "9"] {
        let (code, grabbed) = cli(&server, &["grab", "--envelope", &envelope, "--user", user]);
        assert_eq!((code, grabbed["status"].as_str()), (0, Some("ok")));
        let (code, opened) = cli(&server, &["open", "--envelope", &envelope, "--user", user]);
        assert_eq!((code, opened["status"].as_str()), (0, Some("ok")));
        paid += opened["amount_cents"].as_u64().unwrap();
    }
    assert_eq!(paid, 1000);

    let (code, refused) = cli(&server, &["grab", "--envelope", &envelope, "--user", "10"]);
    assert_eq!((code, refused["status"].as_str()), (1, Some("sold_out")));

    let (code, query) = cli(&server, &["query", "--envelope", &envelope]);
    assert_eq!(code, 0);
    assert_eq!(query["paid_count"], 3);
    assert_eq!(query["paid_cents"], 1000);
    assert_eq!(query["remaining_cents"], 0);
    assert_eq!(query["refunded_cents"], 0);
    let claims = query["claims"].as_array().unwrap();
    assert_eq!(claims.len(), 3);
    assert_eq!(claims.iter().map(|c| c["amount_cents"].as_u64().unwrap()).sum::<u64>(), 1000);
    let users: Vec<u64> = claims.iter().map(|c| c["user"].as_u64().unwrap()).collect();
    assert_eq!(users, [7, 8, 9]);

    let (code, stats) = cli(&server, &["stats"]);
    assert_eq!(code, 0);
    assert_eq!(stats["shards"].as_array().unwrap().len(), 3);
    let total = &stats["total"];
    assert_eq!(total["opens"], 3);
    // Each CLI run is one connection: OPENs came in and were timed.
    assert_eq!(total["requests_by_op"]["open"]["ok"], 3);
    assert_eq!(total["requests_by_op"]["grab"]["sold_out"], 1);
    assert_eq!(total["latency"]["open"]["count"], 3);
    assert!(total["latency"]["open"]["p99_us"].as_f64().is_some_and(|us| us > 0.0));
    assert_eq!(total["log_sync"]["count"], total["log_syncs"]);
    assert!(total["memory_bytes"].as_u64().is_some_and(|m| m > 0));
}

#[test]
fn cli_reports_a_refused_create_and_a_missing_server() {
    let server = TestServer::start(1, &[]);
    let (code, refused) = cli(&server, &["create", "--sender", "1", "--total", "2", "--count", "3"]);
    assert_eq!((code, refused["status"].as_str()), (1, Some("total_too_small")));
    let (code, missing) = cli(&server, &["query", "--envelope", "12345"]);
    assert_eq!((code, missing["status"].as_str()), (1, Some("not_found")));
    drop(server);
}

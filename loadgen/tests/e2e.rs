//! The load generator against a real server for about a second: its money
//! checks pass and its JSON report parses with the promised fields.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A server child and its data directory; both go when the test ends.
struct Server(Child, PathBuf);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn server_bin() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_hongbao-loadgen")).with_file_name("hongbao-server");
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--bin", "hongbao-server", "-p", "hongbao-server"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success());
    }
    path
}

/// A server with `shards` shards on free ports.
fn start_server(shards: u16, extra: &[&str]) -> (Server, u16) {
    for _ in 0..20 {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if port > u16::MAX - shards - 1
            || !(1..=shards).all(|i| TcpListener::bind(("127.0.0.1", port + i)).is_ok())
        {
            continue;
        }
        let data_dir =
            std::env::temp_dir().join(format!("hongbao-loadgen-e2e-{}-{port}", std::process::id()));
        let mut child = Command::new(server_bin())
            .args(["--listen", &format!("127.0.0.1:{port}"), "--shards", &shards.to_string()])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let ready = lines.by_ref().map_while(Result::ok).any(|line| line.contains("ready:"));
        // The rest of its log is read to the end, so the server never writes
        // into a pipe nobody reads (a full one would block its log lines).
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        if ready {
            return (Server(child, data_dir), port);
        }
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    panic!("no free ports for the server");
}

fn loadgen(port: u16, extra: &[&str]) -> (std::process::ExitStatus, serde_json::Value, String) {
    let json = std::env::temp_dir().join(format!("hongbao-loadgen-test-{}-{port}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_hongbao-loadgen"))
        .args(["--server", &format!("127.0.0.1:{port}"), "--warmup", "0.2", "--quiet"])
        .args(if extra.contains(&"--duration") { &[][..] } else { &["--duration", "1"][..] })
        .args(["--cores", "0", "--connections", "2", "--depth", "32", "--json"])
        .arg(&json)
        .args(extra)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    let report = std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("no JSON ({e}): {text}"));
    let _ = std::fs::remove_file(&json);
    (output.status, serde_json::from_str(&report).expect("the JSON report parses"), text)
}

#[test]
fn storm_for_a_second_passes_its_money_checks() {
    let (_server, port) = start_server(2, &[]);
    let (status, report, text) = loadgen(port, &["--scenario", "storm"]);
    assert!(status.success(), "{text}");
    assert_eq!(report["violations"].as_u64(), Some(0), "{text}");
    assert!(report["ops_per_sec"].as_f64().unwrap() > 0.0);
    assert!(report["grab_open_per_sec"].as_f64().unwrap() > 0.0);
    assert!(report["envelopes_verified"].as_u64().unwrap() > 0, "{text}");
    assert_eq!(report["envelopes_unverifiable"].as_u64(), Some(0), "nothing expired in a second: {text}");
    for op in ["create", "grab", "open"] {
        let op = &report["ops"][op];
        assert!(op["count"].as_u64().unwrap() > 0);
        assert!(op["latency_us"]["p99"].as_u64().unwrap() >= op["latency_us"]["p50"].as_u64().unwrap());
        assert!(op["statuses"]["ok"].as_u64().unwrap() > 0);
    }
    assert!(text.contains("money checks: 0 violations"), "{text}");
    // The generator's own loop was watched for the measured second.
    let stalls = &report["stalls"];
    let watched = stalls["observed_secs"].as_f64().unwrap();
    // (How much of it depends on how the machine ran the test: only the
    // bounds are the generator's.)
    assert!(watched > 0.0 && watched <= 1.0, "{stalls}");
    assert_eq!(report["stalls_by_core"][0]["core"].as_u64(), Some(0), "{report}");
    assert!(text.contains("generator stalls: "), "{text}");
    // And its turns split into busy and idle: a storm has answers to read.
    let busy = stalls["busy_fraction"].as_f64().unwrap();
    assert!(busy > 0.0 && busy <= 1.0, "{stalls}");
    assert!(text.contains("generator busy: "), "{text}");
}

/// `--scenario hiccup` needs no server: it watches every core it is given for
/// the measured period, and its bands nest (a 10 ms gap is also a 1 ms gap).
#[test]
fn hiccup_watches_each_core_without_a_server() {
    let json = std::env::temp_dir().join(format!("hongbao-loadgen-hiccup-{}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_hongbao-loadgen"))
        .args(["--scenario", "hiccup", "--cores", "0", "--duration", "0.5", "--warmup", "0.1", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{text}{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    assert_eq!(report["ops_per_sec"].as_f64(), Some(0.0));
    assert_eq!(report["violations"].as_u64(), Some(0));
    let cores = report["stalls_by_core"].as_array().unwrap();
    assert_eq!(cores.len(), 1, "{report}");
    let core = &cores[0];
    assert_eq!(core["core"].as_u64(), Some(0));
    let watched = core["observed_secs"].as_f64().unwrap();
    assert!(watched > 0.0 && watched <= 0.5, "watched {watched} s of 0.5");
    let band = |name: &str| (core[name]["count"].as_u64().unwrap(), core[name]["total_us"].as_u64().unwrap());
    let (over_100us, over_1ms, over_10ms) = (band("over_100us"), band("over_1ms"), band("over_10ms"));
    assert!(over_100us.0 >= over_1ms.0 && over_1ms.0 >= over_10ms.0, "{core}");
    assert!(over_100us.1 >= over_100us.0 * 100 && over_1ms.1 >= over_1ms.0 * 1_000, "{core}");
    assert!(core["max_us"].as_u64().unwrap() as f64 <= watched * 1e6, "{core}");
    assert_eq!(core["busy_fraction"].as_f64(), Some(0.0), "the probe's loop serves no requests: {core}");
    // The probe's chunks were timed in 1 ms windows, at most one per ms.
    let slow = &core["slowness"];
    let windows = slow["windows"].as_u64().unwrap();
    assert!((1..=500).contains(&windows), "{slow}");
    assert!(slow["slow_windows"].as_u64().unwrap() <= windows, "{slow}");
    assert!(slow["chunk_fast_ns"].as_u64().unwrap() > 0, "{slow}");
    assert!(slow["chunk_median_ns"].as_u64().unwrap() >= slow["chunk_fast_ns"].as_u64().unwrap(), "{slow}");
    assert!(slow["longest_slow_ms"].as_u64().unwrap() <= windows, "{slow}");
    assert!(text.contains("core 0   slow: "), "{text}");
    assert!(text.starts_with("hiccup: 0.5 s measured on 1 cores"), "{text}");
    assert!(text.contains("core 0 "), "{text}");
}

#[test]
fn open_loop_and_hot_scenario_run_clean() {
    let (_server, port) = start_server(1, &[]);
    let (status, report, text) =
        loadgen(port, &["--scenario", "hot", "--rate", "20000", "--hot-users", "5000"]);
    assert!(status.success(), "{text}");
    assert_eq!(report["violations"].as_u64(), Some(0));
    assert_eq!(report["settings"]["load_model"].as_str(), Some("open"));
    // Every request due in the measured second is counted, however late it
    // was sent or answered, or counted as lapsed if it never went: together
    // they are the schedule, whatever the machine's speed.
    let rate = report["ops_per_sec"].as_f64().unwrap();
    let lapsed = report["lapsed"].as_u64().unwrap() as f64;
    let due = rate * report["elapsed_secs"].as_f64().unwrap() + lapsed;
    assert!(
        (19_900.0..=20_100.0).contains(&due),
        "open loop at 20,000/s: {rate}/s and {lapsed} lapsed: {text}"
    );
    assert!(report["depth_limited"]["episodes"].is_u64(), "{report}");
    assert!(report["depth_limited"]["total_ms"].as_f64().unwrap() >= 0.0);
    assert!(text.contains("depth limit: connections had all 32 slots taken"), "{text}");
    // Answers that came in during the measured second, to requests of any
    // time: at most the 24,000 sent over warm-up and period together.
    let answered = report["answered_per_sec"].as_f64().unwrap() * report["elapsed_secs"].as_f64().unwrap();
    assert!(answered > 0.0 && answered <= 24_000.5, "answers while the load ran: {answered}");
    assert!(text.contains("answered while the load ran:"), "{text}");
}

#[test]
fn the_load_generator_presents_the_token() {
    let token = std::env::temp_dir().join(format!("hongbao-loadgen-token-{}", std::process::id()));
    std::fs::write(&token, "loadgen-secret\n").unwrap();
    let (_server, port) = start_server(2, &["--auth-token-file", token.to_str().unwrap()]);
    let (status, report, text) = loadgen(port, &["--auth-token-file", token.to_str().unwrap()]);
    assert!(status.success(), "{text}");
    assert_eq!(report["violations"].as_u64(), Some(0));
    assert_eq!(report["ops"]["open"]["statuses"]["not_authenticated"].as_u64(), None, "{text}");
    assert!(report["ops"]["open"]["statuses"]["ok"].as_u64().unwrap() > 0);
    std::fs::remove_file(token).unwrap();
}

#[test]
fn every_micro_benchmark_runs_clean_and_plots() {
    let (_server, port) = start_server(1, &[]);
    for scenario in ["grab", "open", "query", "ping"] {
        let plot =
            std::env::temp_dir().join(format!("hongbao-loadgen-{scenario}-{}.svg", std::process::id()));
        let (status, report, text) =
            loadgen(port, &["--scenario", scenario, "--duration", "0.5", "--plot", plot.to_str().unwrap()]);
        assert!(status.success(), "{scenario}: {text}");
        assert_eq!(report["violations"].as_u64(), Some(0), "{scenario}: {text}");
        let ops = report["ops"].as_object().unwrap();
        let count = |op: &str| ops.get(op).and_then(|o| o["count"].as_u64()).unwrap_or(0);
        match scenario {
            "grab" => assert!(count("grab") > 0 && count("open") == 0, "GRABs only: {text}"),
            "open" => assert!(count("open") > 0 && count("grab") > 0, "{text}"),
            // The pool is built before the clock starts, however slow the
            // machine: the measured period holds QUERYs only.
            "query" => assert!(
                count("query") > 0 && ["create", "grab", "open"].iter().all(|op| count(op) == 0),
                "QUERYs only: {text}"
            ),
            _ => assert_eq!(ops.keys().collect::<Vec<_>>(), ["ping"], "{text}"),
        }
        let svg = std::fs::read_to_string(&plot).unwrap_or_else(|e| panic!("{scenario}: no plot ({e})"));
        std::fs::remove_file(&plot).unwrap();
        assert!(
            svg.starts_with("<svg") || svg.starts_with("<?xml"),
            "{scenario}: {}",
            &svg[..svg.len().min(80)]
        );
        assert!(svg.contains("</svg>"), "{scenario}: a whole SVG document");
    }
}

/// A violation is printed and fails the run. The storm's envelopes hold at
/// most 2 cents a share on average when the generator is told 2 cents is the
/// largest share, but the server (allowed 20,000) splits them at random: some
/// shares come out larger, and the checks must flag them.
#[test]
fn a_money_violation_fails_the_run() {
    let (_server, port) = start_server(1, &["--share-cap", "20000"]);
    let (status, report, text) =
        loadgen(port, &["--scenario", "storm", "--duration", "0.5", "--share-cap", "2"]);
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(report["violations"].as_u64().unwrap() > 0, "{text}");
    assert!(text.contains("outside [1, 2]"), "the violation is printed: {text}");
}

/// A server that refuses the query pool's CREATEs fails the run before the
/// load starts, and says why.
#[test]
fn a_setup_the_server_refuses_fails_the_run_and_names_the_refusal() {
    let (_server, port) = start_server(1, &["--max-envelopes", "8"]);
    let output = Command::new(env!("CARGO_BIN_EXE_hongbao-loadgen"))
        .args(["--server", &format!("127.0.0.1:{port}"), "--scenario", "query", "--cores", "0"])
        .args(["--duration", "0.2", "--warmup", "0", "--quiet"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("not done after") && stderr.contains("last refusal: Create"), "{stderr}");
}

/// With no worker finished there are no figures to report: the run fails,
/// names why, and prints no report and writes no JSON that could be read as
/// a server that answered nothing.
#[test]
fn an_unreachable_server_fails_the_run_without_a_report_of_zeros() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let json = std::env::temp_dir().join(format!("hongbao-loadgen-unreachable-{}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_hongbao-loadgen"))
        .args(["--server", &format!("127.0.0.1:{port}"), "--scenario", "storm", "--cores", "0"])
        .args(["--duration", "0.2", "--warmup", "0", "--quiet", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("cannot reach") && stderr.contains("1 worker(s) failed"), "{stderr}");
    assert!(!stdout.contains("ops/s"), "no report of zeros: {stdout}");
    assert!(!json.exists(), "no JSON written");
}

/// A run that fails (here the server is killed under it) still prints the
/// money violations found before the failure: a failure must not hide them.
#[test]
fn a_failed_run_still_prints_the_violations_it_found() {
    let (mut server, port) = start_server(1, &["--share-cap", "20000"]);
    let run = Command::new(env!("CARGO_BIN_EXE_hongbao-loadgen"))
        .args(["--server", &format!("127.0.0.1:{port}"), "--scenario", "storm", "--cores", "0"])
        .args(["--duration", "60", "--warmup", "0", "--quiet", "--share-cap", "2"])
        .args(["--connections", "2", "--depth", "32"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed once shares have been paid (each one over the generator's cap
    // of 2 cents is likely a violation), however slow the machine is.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut client = hongbao_client::Client::connect(addr).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while client.stats().unwrap().body.unwrap().opens < 1_000 {
        assert!(std::time::Instant::now() < deadline, "no 1,000 opens in 60 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(client);
    let _ = server.0.kill();
    let _ = server.0.wait();
    let output = run.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "the run failed: {text}");
    assert!(text.contains("VIOLATIONS before the run failed") && text.contains("outside [1, 2]"), "{text}");
}

/// A scenario that grabs and opens, against a server that refuses every
/// CREATE it sends (hot envelopes above the server's --max-count), fails
/// and says why: a report of refusals alone must not pass for a clean run.
#[test]
fn a_run_the_server_creates_no_envelope_for_fails_and_says_why() {
    let (_server, port) = start_server(1, &["--max-count", "100"]);
    let output = Command::new(env!("CARGO_BIN_EXE_hongbao-loadgen"))
        .args(["--server", &format!("127.0.0.1:{port}"), "--scenario", "hot", "--cores", "0"])
        .args(["--duration", "0.3", "--warmup", "0", "--quiet", "--hot-count", "1000"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("created no envelope") && stderr.contains("CREATE answered"), "{stderr}");
}

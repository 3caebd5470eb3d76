//! `hongbao-loadgen`: parses flags, runs one pinned worker per core, merges
//! their figures, prints the report and exits non-zero on a money violation.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use clap::Parser;
use glommio::{LocalExecutorBuilder, Placement};
use hongbao_loadgen::args::{self, Args};
use hongbao_loadgen::results::{Recorder, RunResult, RunSettings};
use hongbao_loadgen::violations::Violations;
use hongbao_loadgen::worker::{run_worker, WorkerPlan};
use hongbao_loadgen::{plot, report};

fn main() {
    let args = Args::parse();
    if let Err(why) = args::check(&args).and_then(|()| args::check_outputs(&args)) {
        eprintln!("hongbao-loadgen: {why}");
        std::process::exit(2);
    }
    match run(args) {
        Ok(code) => std::process::exit(code),
        Err(why) => {
            eprintln!("hongbao-loadgen: {why}");
            std::process::exit(2);
        }
    }
}

fn cores(args: &Args) -> Result<Vec<usize>, String> {
    let available: Vec<usize> =
        core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
    let Some(text) = &args.cores else {
        return Ok(vec![available.iter().copied().max().unwrap_or(0)]);
    };
    args::parse_cores(text, &available)
}

fn run(args: Args) -> Result<i32, String> {
    let cores = cores(&args)?;
    let workers = cores.len();
    let start_line = Arc::new(Barrier::new(workers));
    let progress = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for (index, core) in cores.iter().enumerate() {
        let plan = WorkerPlan {
            index,
            core: *core,
            workers,
            args: args.clone(),
            start_line: start_line.clone(),
            progress: progress.clone(),
        };
        // A worker's loop polls its ring without parking (see `driver`).
        let builder = LocalExecutorBuilder::new(Placement::Fixed(*core)).name(&format!("loadgen-{index}"));
        let handle = builder
            .spawn(move || run_worker(plan))
            .map_err(|e| format!("cannot start a worker on core {core}: {e}"))?;
        handles.push(handle);
    }

    let done = Arc::new(AtomicBool::new(false));
    let show_progress = !args.quiet && std::io::stderr().is_terminal();
    let ticker = show_progress.then(|| {
        let (done, progress) = (done.clone(), progress.clone());
        std::thread::spawn(move || {
            let (mut second, mut last) = (0, 0);
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                second += 1;
                let total = progress.load(Ordering::Relaxed);
                eprint!("\r{}", report::progress_line(second, total - last, total));
                last = total;
            }
            eprintln!();
        })
    });

    let mut recorder = Recorder::default();
    let mut shards = 0;
    let mut finished = 0;
    let mut failures = Vec::new();
    // The money violations of workers that failed: their figures are left
    // out of the report, their violations never.
    let mut failed_violations = Violations::default();
    for handle in handles {
        match handle.join() {
            Ok(Ok(outcome)) => {
                recorder.merge(&outcome.recorder);
                shards = outcome.shards;
                finished += 1;
            }
            Ok(Err(failure)) => {
                failures.push(failure.why);
                failed_violations.merge(&failure.violations);
            }
            Err(e) => failures.push(format!("worker failed: {e}")),
        }
    }
    recorder.violations.merge(&failed_violations);
    done.store(true, Ordering::Relaxed);
    if let Some(ticker) = ticker {
        let _ = ticker.join();
    }
    let failed = failures.first().map(|first| format!("{} worker(s) failed; first: {first}", failures.len()));
    // With no worker finished there are no figures: a report of zeros
    // would read like a server that answered nothing.
    if finished == 0 {
        print_violations(&recorder.violations);
        return Err(failed.unwrap_or_else(|| "no worker ran".into()));
    }

    let result = RunResult {
        settings: RunSettings {
            scenario: args.scenario.name().to_string(),
            server: args.server.to_string(),
            load_model: if args.rate.is_some() { "open" } else { "closed" }.to_string(),
            rate: args.rate.unwrap_or(0),
            cores: cores.clone(),
            connections: args.connections,
            depth: args.depth,
            duration_secs: args.duration,
            warmup_secs: args.warmup,
            shards,
        },
        recorder,
        // Requests that started inside the measured window are counted,
        // however late their answers came, so the window is the denominator.
        elapsed_secs: args.duration,
    };
    let summary = report::summary(&result);
    // A failed worker does not take the others' figures and violations
    // with it: the report shows them, marked partial, and the run still fails.
    if let Some(failed) = &failed {
        println!(
            "PARTIAL: {finished} of {workers} workers finished; the figures below are theirs only ({failed})"
        );
    }
    print!("{}", report::text(&summary));
    if let Some(path) = &args.json {
        let mut json = report::to_json(&summary);
        if !failures.is_empty() {
            json["failures"] = serde_json::json!(failures);
            json["workers_finished"] = serde_json::json!(finished);
        }
        let json = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
        std::fs::write(path, json).map_err(|e| format!("--json {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        let title = format!("hongbao {} ({} loop)", result.settings.scenario, result.settings.load_model);
        plot::write_plot(path, &summary, &title).map_err(|e| format!("--plot {}: {e}", path.display()))?;
    }
    if let Some(failed) = failed {
        return Err(failed);
    }
    if let Some(why) = no_envelopes(args.scenario, &result.recorder) {
        return Err(why);
    }
    Ok(if result.recorder.violations.is_empty() { 0 } else { 1 })
}

/// The money violations of a run that has no report to show them in (every
/// worker failed): printed all the same, since a failure must not hide them.
fn print_violations(violations: &Violations) {
    if violations.is_empty() {
        return;
    }
    println!("money checks: {} VIOLATIONS before the run failed:", violations.count());
    for message in violations.messages().iter().take(report::VIOLATION_LINES_MAX) {
        println!("  {message}");
    }
    let shown = violations.messages().len().min(report::VIOLATION_LINES_MAX) as u64;
    if violations.count() > shown {
        println!("  ... and {} more", violations.count() - shown);
    }
}

/// Why a run measured nothing of what it was for: a scenario that grabs and
/// opens, against a server that created no envelope for it (every CREATE
/// refused, say for a --hot-count above the server's --max-count). Its
/// figures would be all refusals, and must not pass for a clean run.
fn no_envelopes(scenario: args::Scenario, recorder: &Recorder) -> Option<String> {
    use args::Scenario::{Grab, Hot, Open, Storm};
    if !matches!(scenario, Storm | Hot | Grab | Open) || recorder.envelopes_created > 0 {
        return None;
    }
    Some(match recorder.create_refused {
        Some(status) => format!("the server created no envelope in the whole run: CREATE answered {status}"),
        None => "the server created no envelope in the whole run: no CREATE was answered".to_string(),
    })
}

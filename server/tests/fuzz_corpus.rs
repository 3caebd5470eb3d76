//! Every input in the fuzz corpora (seeds, and anything a fuzz run found and
//! was kept) goes through the fuzz targets' code on every test run, so a crash
//! once found stays fixed.

use std::path::Path;

fn each_input(dir: &str, run: impl Fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(dir);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        run(&std::fs::read(&path).unwrap());
        count += 1;
    }
    count
}

#[test]
fn the_frame_decoder_corpus_runs_clean() {
    assert!(each_input("frame_decoder", hongbao_client::fuzz::frames) >= 18, "the golden frames are seeds");
}

#[test]
fn the_log_replay_corpus_runs_clean() {
    assert!(
        each_input("log_replay", hongbao_server::fuzz::log_replay) >= 14,
        "the seeds of both record versions"
    );
}

#[test]
fn the_server_input_corpus_runs_clean() {
    assert!(each_input("server_input", hongbao_server::fuzz::server_input) >= 10);
}

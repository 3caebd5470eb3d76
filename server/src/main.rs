//! `hongbao-server`: parses flags and runs the shards. See `--help`.

use clap::Parser;
use hongbao_server::config::Args;

fn main() {
    hongbao_server::log::start();
    let args = Args::parse();
    let config = match args.into_config() {
        Ok(config) => config,
        Err(error) => {
            hongbao_server::log!("hongbao-server: {error}");
            hongbao_server::log::flush();
            std::process::exit(2);
        }
    };
    if let Err(error) = hongbao_server::server::run(config) {
        hongbao_server::log!("hongbao-server: {error}");
        hongbao_server::log::flush();
        std::process::exit(1);
    }
    // The writer thread dies with the process: "stopped" must be out first.
    hongbao_server::log::flush();
}

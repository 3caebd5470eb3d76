//! `hongbao-server`: parses flags and runs the shards. See `--help`.

use clap::Parser;
use hongbao_server::config::Args;

fn main() {
    let args = Args::parse();
    let config = match args.into_config() {
        Ok(config) => config,
        Err(error) => {
            hongbao_server::log!("hongbao-server: {error}");
            std::process::exit(2);
        }
    };
    if let Err(error) = hongbao_server::server::run(config) {
        hongbao_server::log!("hongbao-server: {error}");
        std::process::exit(1);
    }
}

//! The `catalog` binary: parse the configuration, start logging, run.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = catalog::Config::parse();
    catalog::init_tracing(&config.log);
    match catalog::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "catalog stopped on an error");
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! The `catalog` binary: parse the configuration, start logging (and span
//! export, when the environment asks for it), run.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = catalog::Config::parse();
    let telemetry = match catalog::telemetry::init(&config.log) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("error: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = catalog::run(config).await;
    if let Err(error) = &result {
        tracing::error!(%error, "catalog stopped on an error");
        eprintln!("error: {error}");
    }
    // Blocks while the last spans go out: the server has stopped already.
    telemetry.shutdown();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    }
}

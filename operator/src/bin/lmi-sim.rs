//! `lmi-sim`: the autoscaler in virtual time. See `lmi_operator::sim` and docs/autoscaling.md.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use lmi_operator::error::Error;
use lmi_operator::sim::cli;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = cli::parse(&args).and_then(|options| cli::execute(&options));
    match outcome {
        Ok(table) => {
            print!("{table}");
            ExitCode::SUCCESS
        }
        Err(Error::Config(message)) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("lmi-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

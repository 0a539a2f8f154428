//! The `loadgen` binary: see `loadgen --help` and [`mixnode::loadgen`].
//! Exit codes: 0 nothing lost, 1 packets lost or a node unreachable, 2 bad flags.

use std::process::ExitCode;

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let args = match mixnode::loadgen::parse(&raw) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{}", mixnode::loadgen::HELP);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match mixnode::loadgen::run(&args) {
        Ok(report) => {
            if args.json {
                println!("{}", report.json());
            } else {
                print!("{}", report.table());
            }
            if report.lost > 0 {
                eprintln!("error: {}", report.loss_line());
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

//! `ferry`: the command line. Parses arguments, sets up logging and the async
//! runtime, runs one command and turns its result into an exit code. Each
//! command lives in its own `cmd_*` module; nothing here decides anything.

mod cli;
#[cfg(feature = "cloud")]
mod cloud;
mod cmd_control;
mod cmd_precheck;
mod cmd_run;
mod cmd_status;
mod cmd_verify;
mod console;
mod context;
mod dispatch;
mod progress;
mod status_watch;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    progress::init_tracing_verbose(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        // Stage futures nest deeply (the state machine, a stage, the apply pipeline).
        .thread_stack_size(8 << 20)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(cli.execute());
    context::exit(result)
}

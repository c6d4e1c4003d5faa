//! The `hmr-proxy` binary: parse, configure, bind, run, and turn errors into exit codes.

use std::process::ExitCode;

use hmr_proxy::allocator::OffPageStart;
use hmr_proxy::{Config, Shutdown, logging};

/// mimalloc in place of glibc's malloc. Response buffers and decoder state are allocated on one
/// worker thread and often freed on the other; glibc then takes the owning arena's lock, and the
/// contention showed as futex waits and context switches. Measured with `bench/ab` at 64
/// connections: gzip 2 KB page +14 % requests/s, identity 2 KB +9 %, 100 KB script +7 %, with
/// 5–15 % less CPU per request; RSS idle 8.9 MB (glibc 7.7), 10,000 streams 47 MB (same).
/// Its large blocks start on a page, which costs the kernel dearly when it sends a body on from
/// such a buffer; [`OffPageStart`] moves them (see its module).
#[global_allocator]
static ALLOCATOR: OffPageStart<mimalloc::MiMalloc> = OffPageStart(mimalloc::MiMalloc);

fn main() -> ExitCode {
    let (cli, matches) = match Config::parse_args(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(err) => err.exit(),
    };
    logging::init(cli.output.verbose, cli.output.quiet);
    let cwd = match std::env::current_dir() {
        Ok(cwd) => cwd,
        Err(err) => return fail(&format!("cannot read the working directory: {err}"), 2),
    };
    // Exit 0 or 1 only: Docker reserves 2, and only the listen address matters to the check.
    if cli.server.health_check {
        let checked = Config::listen_address(&cli, &cwd)
            .and_then(|listen| hmr_proxy::healthcheck::check(listen).map_err(|e| e.to_string()));
        return match checked {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(&err, 1),
        };
    }
    let config = match Config::load(cli, &matches, &cwd) {
        Ok(config) => config,
        Err(err) => return fail(&err.to_string(), 2),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&format!("cannot start the async runtime: {err}"), 1),
    };
    runtime.block_on(async {
        let listener = match hmr_proxy::bind(&config).await {
            Ok(listener) => listener,
            Err(err) => return fail(&err.to_string(), err.exit_code()),
        };
        let shutdown = Shutdown::new();
        shutdown.trigger_on_signals();
        hmr_proxy::run(config, listener, shutdown).await;
        ExitCode::SUCCESS
    })
}

/// Print one `error:` line (not through tracing: `-q` must not hide why the process stopped).
fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}

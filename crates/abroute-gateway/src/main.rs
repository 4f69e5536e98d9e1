//! `abroute`: the gateway (`serve`), the config tools (`check`, `simulate`, `explain`) and the
//! experiment readout of a running gateway (`report`).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use abroute_gateway::config::{GatewayConfig, LogFormat, WatchConfig};
use abroute_gateway::mock::{MockControl, MockServer};
use abroute_gateway::{
    Gateway, StartOptions, check, explain, report, routerfile, simulate, telemetry,
};
use clap::{Parser, Subcommand};

/// mimalloc: the gateway allocates per request (bodies, headers, records); glibc's malloc spent
/// about a sixth of its CPU time there under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use serde_json::Value;

/// Weighted A/B routing of LLM requests: a gateway, and tools for router configs.
#[derive(Parser, Debug)]
#[command(name = "abroute", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway. Without --config: the demo mode (127.0.0.1:8080, auth off, the seed's
    /// compare-frontier-models router, every model answered by the built-in mock upstream).
    Serve {
        /// The TOML config file (see docs/gateway.md).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Listen here instead (host:port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Keep routers created through the API in this state file.
        #[arg(long)]
        state: Option<PathBuf>,
        /// Share routers with every replica through this PostgreSQL store
        /// (postgresql://user:password@host:port/db); also ABROUTE_STORE_URL.
        #[arg(long)]
        store_url: Option<String>,
        /// Load and watch this directory of router files (*.json).
        #[arg(long)]
        watch: Option<PathBuf>,
        /// Log format.
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Validate router files (directories: their *.json files; .toml: gateway configs).
    /// Prints every problem as `file: json.path: message`; exit code 0 or 1.
    Check {
        /// Require every route's weights to add up to exactly 100, as Inworld does.
        #[arg(long)]
        strict: bool,
        /// Files or directories.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Route many requests through a router file and show the realized split per route and
    /// variant beside the configured weights.
    Simulate {
        /// The router file.
        file: PathBuf,
        /// How many requests.
        #[arg(long, short = 'n', default_value_t = 1_000_000)]
        requests: u64,
        /// Sticky users (request i is sent by user i mod N); without it, random picks.
        #[arg(long)]
        users: Option<u64>,
        /// Metadata for conditions, key=value (value read as JSON when it is: seats=12).
        #[arg(long, short, value_parser = parse_metadata)]
        metadata: Vec<(String, Value)>,
        /// An older version of the router: how many sticky users would move, and the least
        /// possible (total variation distance). Implies 100000 users unless --users is given.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Seed of the random picks.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print JSON instead of the chart.
        #[arg(long)]
        json: bool,
    },
    /// Show which route a request takes and why, its variant, and its attempt plan.
    Explain {
        /// The router file.
        file: PathBuf,
        /// The sticky key (the body's `user`).
        #[arg(long, short)]
        user: Option<String>,
        /// Metadata for conditions, key=value (value read as JSON when it is: seats=12).
        #[arg(long, short, value_parser = parse_metadata)]
        metadata: Vec<(String, Value)>,
        /// A user message, for conditions over `messages`.
        #[arg(long)]
        message: Option<String>,
        /// The request's own fallback models (extra_body.models), in order.
        #[arg(long = "model")]
        models: Vec<String>,
        /// The random draw of a non-sticky pick (a 64-bit number).
        #[arg(long, default_value_t = 0)]
        random: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a running gateway's experiment readout of one router: per route and arm, assigned
    /// and served counts beside the weights, the sample-ratio test, failover and error rates,
    /// latency and TTFT percentiles, tokens and cost per request (docs/experiments.md).
    Report {
        /// The router.
        router: String,
        /// The gateway's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// An API key with read permission (else ABROUTE_API_KEY, if set).
        #[arg(long)]
        key: Option<String>,
        /// Print the readout's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run only the built-in mock upstream (chat, messages, responses; SSE), e.g. to measure
    /// the gateway.
    Mock {
        /// Listen here.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
    },
}

fn parse_metadata(s: &str) -> Result<(String, Value), String> {
    routerfile::parse_metadata(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            listen,
            state,
            store_url,
            watch,
            log_format,
        } => serve(config, listen, state, store_url, watch, log_format),
        Command::Check { strict, files } => {
            let report = check::check(&files, strict);
            for p in &report.problems {
                println!("{p}");
            }
            for w in &report.warnings {
                println!("{w}");
            }
            eprintln!(
                "{} file(s), {} valid router(s), {} problem(s), {} warning(s)",
                report.files,
                report.routers,
                report.problems.len(),
                report.warnings.len()
            );
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Simulate {
            file,
            requests,
            users,
            metadata,
            from,
            seed,
            json,
        } => run_simulate(file, requests, users, metadata, from, seed, json),
        Command::Explain {
            file,
            user,
            metadata,
            message,
            models,
            random,
            json,
        } => {
            let Some(router) = load_router(&file) else {
                return ExitCode::FAILURE;
            };
            let out = explain::explain(
                &router,
                &explain::ExplainInput {
                    user,
                    metadata,
                    message,
                    models,
                    random,
                },
            );
            if json {
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            } else {
                print!("{}", explain::render(&out));
            }
            ExitCode::SUCCESS
        }
        Command::Report {
            router,
            url,
            key,
            json,
        } => {
            let runtime = match runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            let key = key.or_else(|| std::env::var("ABROUTE_API_KEY").ok());
            match runtime.block_on(report::fetch(&url, &router, key.as_deref())) {
                Ok(v) if json => {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Ok(v) => {
                    print!("{}", report::render(&v));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("abroute report: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Mock { listen } => {
            let runtime = match runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            runtime.block_on(async {
                telemetry::init_logging(&Default::default());
                let mut signals = Signals::new();
                match MockServer::start(listen, MockControl::new()).await {
                    Ok(server) => {
                        println!(
                            "abroute mock upstream listening on http://{}",
                            server.addr()
                        );
                        tokio::select! {
                            () = server.wait() => {}
                            () = signals.recv() => {}
                        }
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("abroute: cannot listen on {listen}: {e}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
    }
}

fn load_router(file: &std::path::Path) -> Option<abroute::CompiledRouter> {
    match routerfile::read_router(file, &abroute::ValidationOptions::default()) {
        Ok(config) => config.compile().ok(),
        Err(problems) => {
            for p in problems {
                eprintln!("{p}");
            }
            None
        }
    }
}

fn run_simulate(
    file: PathBuf,
    requests: u64,
    users: Option<u64>,
    metadata: Vec<(String, Value)>,
    from: Option<PathBuf>,
    seed: u64,
    json: bool,
) -> ExitCode {
    let Some(router) = load_router(&file) else {
        return ExitCode::FAILURE;
    };
    let old = match &from {
        Some(f) => match load_router(f) {
            Some(r) => Some(r),
            None => return ExitCode::FAILURE,
        },
        None => None,
    };
    let show = !json && std::io::stderr().is_terminal() && requests >= 1_000_000;
    let bar = if show {
        let bar = indicatif::ProgressBar::new(requests);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} requests, {per_sec}, eta {eta}",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let sim = simulate::simulate(
        &router,
        old.as_ref(),
        &simulate::SimulateOptions {
            requests,
            users,
            metadata,
            seed,
        },
        &mut |done| bar.set_position(done),
    );
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&sim).unwrap_or_default());
    } else {
        print!("{}", simulate::render(&sim));
    }
    ExitCode::SUCCESS
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("abroute: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

/// Listens for SIGTERM and SIGINT (Ctrl-C) from the moment it is made: a signal that arrives
/// before anyone waits is not lost, and never kills the process abruptly.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Registers the handlers (inside a runtime).
    fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Signals {}
        }
    }

    /// Completes on the first signal.
    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = next(&mut self.term) => {}
                () = next(&mut self.int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn serve(
    config_file: Option<PathBuf>,
    listen: Option<SocketAddr>,
    state: Option<PathBuf>,
    store_url: Option<String>,
    watch: Option<PathBuf>,
    log_format: Option<LogFormat>,
) -> ExitCode {
    let mut config = match &config_file {
        Some(path) => match GatewayConfig::from_file(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("abroute: invalid config: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => GatewayConfig::demo(),
    };
    if let Some(l) = listen {
        config.listen = l;
    }
    if let Some(s) = state {
        config.store.path = Some(s);
    }
    // The flag, then the environment, then the file.
    if let Some(url) = store_url.or_else(|| {
        std::env::var("ABROUTE_STORE_URL")
            .ok()
            .filter(|u| !u.is_empty())
    }) {
        config.store.url = Some(url);
    }
    if let Some(dir) = watch {
        config.watch = Some(WatchConfig {
            dir,
            interval: std::time::Duration::from_secs(2),
        });
    }
    if let Some(f) = log_format {
        config.log.format = f;
    }
    telemetry::init_logging(&config.log);
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let mut signals = Signals::new();
        let gateway = match Gateway::start(config, StartOptions::default()).await {
            Ok(g) => g,
            Err(e) => {
                eprintln!("abroute: cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        if config_file.is_none() {
            println!("abroute demo mode (no --config): every model is answered by the built-in mock upstream");
        }
        println!("{}", gateway.banner());
        signals.recv().await;
        tracing::info!("signal received: draining in-flight requests");
        if gateway.shutdown().await {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}

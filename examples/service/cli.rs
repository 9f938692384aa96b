//! The command line of the service example.

use std::net::SocketAddr;

/// What `--help` prints, and a bad command line after its error.
pub const USAGE: &str = "\
usage: service [--serve] [--listen ADDR] [--otlp URL]

  (no flag)      serve on a free loopback port, play a client against it, shut down, exit
  --serve        serve until SIGTERM, ctrl-c or Enter, then shut down gracefully
  --listen ADDR  the address to serve on (default 127.0.0.1:8080 with --serve, else 127.0.0.1:0)
  --otlp URL     export traces over OTLP/HTTP to the collector at URL (http://host:4318); needs
                 the `otlp` feature: cargo run --example service --features otlp -- --otlp URL

environment:
  REDIS_URL                    the Redis server (default 127.0.0.1:6379, else a throwaway one)
  REDIS_STREAMS_URL            the server of the `streams` client (default: REDIS_URL's)
  OTEL_EXPORTER_OTLP_ENDPOINT  export traces there when --otlp is not given (and the other
                               OTEL_EXPORTER_OTLP_* and OTEL_SERVICE_NAME variables)";

/// The variables that turn OTLP export on without `--otlp` (the exporter reads them itself).
pub const OTLP_ENV: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// Where traces go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Otlp {
    /// Nowhere.
    Off,
    /// To this collector (`--otlp URL`).
    Endpoint(String),
    /// To the collector of the `OTEL_EXPORTER_OTLP_*` variables.
    Environment,
}

/// A parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// `--help`: print [`USAGE`] and exit.
    pub help: bool,
    /// Serve until told to stop, instead of the demo.
    pub serve: bool,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Where traces go.
    pub otlp: Otlp,
}

/// Parses `args` (without the program's name); `env` reads an environment variable. An
/// `--otlp` flag wins over the environment.
pub fn parse<I, E>(args: I, env: E) -> Result<Options, String>
where
    I: IntoIterator<Item = String>,
    E: Fn(&str) -> Option<String>,
{
    let (mut help, mut serve, mut listen, mut otlp) = (false, false, None, None);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value)),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| match inline {
            Some(v) => Ok(v.to_owned()),
            None => args.next().ok_or_else(|| format!("{name} needs a value")),
        };
        match flag.as_str() {
            "-h" | "--help" => help = true,
            "--serve" => serve = true,
            "--listen" => {
                let v = value("--listen")?;
                let addr = v
                    .parse::<SocketAddr>()
                    .map_err(|e| format!("--listen {v:?}: {e}"))?;
                listen = Some(addr);
            }
            "--otlp" => {
                let v = value("--otlp")?;
                if !(v.starts_with("http://") || v.starts_with("https://")) {
                    return Err(format!("--otlp {v:?}: an http:// or https:// URL"));
                }
                otlp = Some(Otlp::Endpoint(v));
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let from_env = OTLP_ENV
        .iter()
        .any(|var| env(var).is_some_and(|v| !v.trim().is_empty()));
    let otlp = otlp.unwrap_or(if from_env {
        Otlp::Environment
    } else {
        Otlp::Off
    });
    let default_port = if serve { 8080 } else { 0 };
    Ok(Options {
        help,
        serve,
        listen: listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], default_port))),
        otlp,
    })
}

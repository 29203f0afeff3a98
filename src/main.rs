//! `tenantgate run | check | demo` (docs/reference.md §2).

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
tenantgate: tenant-isolating sidecar proxy for AWS Bedrock and SageMaker

USAGE:
    tenantgate run --config PATH      run the sidecar
    tenantgate --config PATH          same as run
    tenantgate check --config PATH    validate a config file; exit 1 listing every error
    tenantgate demo                   self-contained demonstration on this machine
    tenantgate policy-schema [--config PATH]
                                      print the Cedar schema policies are checked against
                                      (with the claims of the config, when one is given)

The config path may also come from TENANTGATE_CONFIG.
Logging: diagnostics to stderr, filter from TENANTGATE_LOG (default info);
audit records (one JSON line per request) to stdout.
";

enum Command {
    Run(PathBuf),
    Check(PathBuf),
    Demo,
    PolicySchema(Option<PathBuf>),
    Help,
    Version,
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut sub: Option<&str> = None;
    let mut config: Option<PathBuf> = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        match a {
            "-h" | "--help" | "help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "-c" | "--config" => {
                let v = args.get(i + 1).ok_or("--config needs a path")?;
                config = Some(PathBuf::from(v));
                i += 1;
            }
            _ if a.starts_with("--config=") => config = Some(PathBuf::from(&a["--config=".len()..])),
            "run" | "check" | "demo" | "policy-schema" if sub.is_none() => sub = Some(a),
            _ => return Err(format!("unexpected argument '{a}'")),
        }
        i += 1;
    }
    let config = config.or_else(|| std::env::var_os("TENANTGATE_CONFIG").map(PathBuf::from));
    let need = |c: Option<PathBuf>| c.ok_or_else(|| "no config: pass --config PATH or set TENANTGATE_CONFIG".to_string());
    match sub.unwrap_or("run") {
        "run" => Ok(Command::Run(need(config)?)),
        "check" => Ok(Command::Check(need(config)?)),
        "demo" => Ok(Command::Demo),
        "policy-schema" => Ok(Command::PolicySchema(config)),
        other => Err(format!("unknown command '{other}'")),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TENANTGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

fn print_config_errors(path: &std::path::Path, errors: &[tenantgate::config::ConfigError]) {
    for e in errors {
        eprintln!("{}: {e}", path.display());
    }
    eprintln!("{}: {} error{}", path.display(), errors.len(), if errors.len() == 1 { "" } else { "s" });
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tenantgate: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match cmd {
        Command::Help => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("tenantgate {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check(path) => match tenantgate::config::load_file(&path) {
            Ok(cfg) => {
                println!(
                    "{}: OK ({} tenant{} listed{})",
                    path.display(),
                    cfg.tenants.len(),
                    if cfg.tenants.len() == 1 { "" } else { "s" },
                    if cfg.unlisted.is_some() { ", unlisted tenants admitted with tenant_defaults" } else { "" }
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                print_config_errors(&path, &errors);
                ExitCode::from(1)
            }
        },
        Command::Demo => demo(),
        Command::PolicySchema(path) => {
            let claims = match path.map(|p| (tenantgate::config::load_file(&p), p)) {
                None => Vec::new(),
                Some((Ok(cfg), _)) => cfg.policy.claims.clone(),
                Some((Err(errors), p)) => {
                    print_config_errors(&p, &errors);
                    return ExitCode::from(1);
                }
            };
            print!("{}", tenantgate::decide::cedar::schema_text(&claims));
            ExitCode::SUCCESS
        }
        Command::Run(path) => {
            init_logging();
            let cfg = match tenantgate::config::load_file(&path) {
                Ok(c) => c,
                Err(errors) => {
                    print_config_errors(&path, &errors);
                    return ExitCode::from(1);
                }
            };
            // `aws.endpoints.sts` is the STS endpoint of the base credential
            // chain too (IRSA's AssumeRoleWithWebIdentity). The chain reads it
            // from the environment; set it while the process is still
            // single-threaded.
            if let Some(sts) = &cfg.aws.endpoints.sts {
                std::env::set_var("AWS_ENDPOINT_URL_STS", sts.to_string().trim_end_matches('/'));
            }
            let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("tenantgate: cannot start runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            match rt.block_on(tenantgate::run::run(cfg, path)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("tenantgate: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

#[cfg(feature = "demo")]
fn demo() -> ExitCode {
    let code = tenantgate::demo::run();
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// A build without the `demo` feature (the container image) has no
/// simulator to run the demo against.
#[cfg(not(feature = "demo"))]
fn demo() -> ExitCode {
    eprintln!("tenantgate demo: this build has no demo (built without the `demo` feature); run it from a source checkout with `cargo run -- demo`");
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn cli_forms_of_spec_section_2() {
        assert!(matches!(parse_args(&args(&["run", "--config", "a.toml"])), Ok(Command::Run(p)) if p == std::path::Path::new("a.toml")));
        assert!(matches!(parse_args(&args(&["--config", "a.toml"])), Ok(Command::Run(_))));
        assert!(matches!(parse_args(&args(&["check", "--config=a.toml"])), Ok(Command::Check(_))));
        assert!(matches!(parse_args(&args(&["demo"])), Ok(Command::Demo)));
        assert!(matches!(parse_args(&args(&["policy-schema"])), Ok(Command::PolicySchema(_))));
        assert!(parse_args(&args(&["frobnicate"])).is_err());
        assert!(parse_args(&args(&["run", "--config"])).is_err());
    }
}


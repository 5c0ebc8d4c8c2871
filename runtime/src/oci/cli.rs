//! The command line of `isolab-oci`, named and shaped as runc's, which is what callers
//! (conmon, containerd shims) speak: global `--root`, `--log`, `--log-format`, `--debug`
//! before the command, then `create --bundle B --pid-file F --console-socket S ID`, ...
//!
//! An error is one line on stderr and, with `--log`, one entry in the log file (JSON with
//! `--log-format json`, which conmon reads back); the exit status is then 1.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

use clap::{Parser, Subcommand, ValueEnum};

use super::OciError;
use super::lifecycle::{self, Context, CreateOptions, ExecOptions};
use super::state::Root;
use crate::explain::Explain;

#[derive(Debug, Parser)]
#[command(
    name = "isolab-oci",
    version,
    about = "isolab's OCI runtime: runs an OCI bundle with the same code as `isolab run`"
)]
struct Cli {
    /// Directory of the containers' state.
    #[arg(long, global = true, default_value = super::DEFAULT_ROOT)]
    root: PathBuf,
    /// Also write errors (and, with --debug, each command) to this file.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    #[arg(long = "log-format", global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log each command, and print each setup step with its system call on stderr.
    #[arg(long, global = true)]
    debug: bool,
    /// Refused: isolab manages cgroups through cgroupfs, not systemd.
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
struct BundleArgs {
    /// The bundle directory (config.json and the root filesystem).
    #[arg(long, short, default_value = ".")]
    bundle: PathBuf,
    /// Write the container init's host pid here.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// A Unix socket to send the terminal's master to (process.terminal).
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Accepted for compatibility; isolab always uses pivot_root.
    #[arg(long = "no-pivot", hide = true)]
    no_pivot: bool,
    /// Accepted for compatibility; no session keyring is created.
    #[arg(long = "no-new-keyring", hide = true)]
    no_new_keyring: bool,
    id: String,
}

impl BundleArgs {
    fn options(&self) -> Result<CreateOptions, OciError> {
        if self.no_pivot {
            return Err(OciError::Usage(
                "--no-pivot is not supported: isolab-oci always uses pivot_root".into(),
            ));
        }
        Ok(CreateOptions {
            bundle: self.bundle.clone(),
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
        })
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a container from a bundle; its command waits for `start`.
    Create(BundleArgs),
    /// Let a created container run its command.
    Start { id: String },
    /// Print the container's state JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to the container's init.
    Kill {
        /// Signal every process of the container.
        #[arg(long, short)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Remove a stopped container (--force: kill it first).
    Delete {
        #[arg(long, short)]
        force: bool,
        id: String,
    },
    /// Create and start a container; wait for it unless --detach.
    Run {
        #[command(flatten)]
        bundle: BundleArgs,
        #[arg(long, short)]
        detach: bool,
    },
    /// Run a new process in a running container.
    Exec {
        /// A process JSON file (the config's process object).
        #[arg(long, short)]
        process: Option<PathBuf>,
        #[arg(long, short)]
        detach: bool,
        #[arg(long = "pid-file")]
        pid_file: Option<PathBuf>,
        #[arg(long = "console-socket")]
        console_socket: Option<PathBuf>,
        #[arg(long, short)]
        tty: bool,
        #[arg(long)]
        cwd: Option<PathBuf>,
        #[arg(long, short)]
        env: Vec<String>,
        /// UID[:GID]
        #[arg(long, short)]
        user: Option<String>,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// List the container's processes (host pids).
    Ps {
        #[arg(long, short, default_value = "table")]
        format: String,
        id: String,
    },
    /// Print what this runtime supports (the spec's features JSON).
    Features,
}

#[derive(Debug)]
struct Logger {
    path: Option<PathBuf>,
    format: LogFormat,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

fn log(level: &str, message: &str) {
    let Some(Logger {
        path: Some(path),
        format,
    }) = LOGGER.get()
    else {
        return;
    };
    let time = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let line = match format {
        LogFormat::Json => {
            serde_json::json!({"level": level, "msg": message, "time": time}).to_string()
        }
        LogFormat::Text => format!("{time} {level} {message}"),
    };
    // Logging must not turn a result into a failure; a log that cannot be written is lost.
    if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(file, "{line}");
    }
}

/// A problem that does not change the outcome (a failed poststart or poststop hook).
pub fn warn(message: &str) {
    eprintln!("isolab-oci: warning: {message}");
    log("warning", message);
}

fn fail(error: &OciError) -> ExitCode {
    let message = error.to_string();
    eprintln!("isolab-oci: {message}");
    log("error", &message);
    ExitCode::from(1)
}

fn parse_user(text: &str) -> Result<(u32, u32), OciError> {
    crate::container::config::parse_user(text)
        .map(|u| (u.uid, u.gid))
        .map_err(|e| OciError::Usage(e.to_string()))
}

/// The whole program: parses the arguments, runs the command, returns the exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = LOGGER.set(Logger {
        path: cli.log.clone(),
        format: cli.log_format,
    });
    if cli.debug {
        log(
            "debug",
            &format!("{:?}", std::env::args().collect::<Vec<_>>()),
        );
    }
    if cli.systemd_cgroup {
        return fail(&OciError::Usage(
            "--systemd-cgroup is not supported: isolab-oci manages cgroups through cgroupfs; use the cgroupfs manager (podman: --cgroup-manager cgroupfs)".into(),
        ));
    }
    let ctx = Context {
        root: Root::new(&cli.root),
        explain: if cli.debug {
            Explain::on(Instant::now())
        } else {
            Explain::off()
        },
    };
    match dispatch(&ctx, cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(&e),
    }
}

fn dispatch(ctx: &Context, command: Command) -> Result<u8, OciError> {
    match command {
        Command::Create(args) => lifecycle::create(ctx, &args.id, &args.options()?).map(|()| 0),
        Command::Start { id } => lifecycle::start(ctx, &id).map(|()| 0),
        Command::State { id } => {
            println!("{}", lifecycle::state(ctx, &id)?);
            Ok(0)
        }
        Command::Kill { all, id, signal } => {
            lifecycle::kill(ctx, &id, lifecycle::parse_signal(&signal)?, all).map(|()| 0)
        }
        Command::Delete { force, id } => lifecycle::delete(ctx, &id, force).map(|()| 0),
        Command::Run { bundle, detach } => {
            lifecycle::run(ctx, &bundle.id, &bundle.options()?, detach)
        }
        Command::Exec {
            process,
            detach,
            pid_file,
            console_socket,
            tty,
            cwd,
            env,
            user,
            id,
            command,
        } => {
            let options = ExecOptions {
                process,
                args: command,
                env,
                cwd,
                user: user.as_deref().map(parse_user).transpose()?,
                tty,
                detach,
                pid_file,
                console_socket,
            };
            lifecycle::exec(ctx, &id, &options)
        }
        Command::Ps { format, id } => {
            let pids = lifecycle::ps(ctx, &id)?;
            match format.as_str() {
                "json" => println!("{}", serde_json::json!(pids)),
                "table" => {
                    println!("PID");
                    for pid in pids {
                        println!("{pid}");
                    }
                }
                other => {
                    return Err(OciError::Usage(format!(
                        "unknown ps --format {other:?}: expected table or json"
                    )));
                }
            }
            Ok(0)
        }
        Command::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&lifecycle::features()).unwrap_or_default()
            );
            Ok(0)
        }
    }
}

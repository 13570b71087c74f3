//! The one way xtask runs other programs: every command is printed before it runs, and a
//! failure says what was being done. A program that is not installed is named, with how
//! to get it.

use std::{
    ffi::{OsStr, OsString},
    fmt,
    path::Path,
    process::{Command, ExitStatus, Stdio},
};

use anyhow::{Context as _, bail};

/// A command line, built like `std::process::Command` but printable and with errors
/// that explain themselves.
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    current_dir: Option<std::path::PathBuf>,
    /// What the command is for, in a few words ("building mock-service").
    purpose: String,
    /// Starts it in a process group of its own, out of reach of the terminal's signals.
    own_process_group: bool,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>, purpose: impl Into<String>) -> Cmd {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            current_dir: None,
            purpose: purpose.into(),
            own_process_group: false,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Cmd {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Cmd {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Cmd {
        self.current_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Starts it in a process group of its own: a signal the terminal sends its
    /// foreground group (Ctrl+C, a hangup) does not reach it; whoever started it stops it.
    pub fn own_process_group(mut self) -> Cmd {
        self.own_process_group = true;
        self
    }

    /// Runs to completion, its output shown on stderr (xtask's stdout carries only
    /// results, e.g. the image reference); a non-zero exit is an error.
    pub fn run(self) -> anyhow::Result<()> {
        crate::supervisor::tell(&format!("$ {self}"));
        let status = self
            .command()
            .stdout(std::io::stderr())
            .status()
            .map_err(|error| self.spawn_error(&error))?;
        self.check(status)
    }

    /// Runs to completion and returns its stdout, trimmed; a non-zero exit is an error.
    pub fn read(self) -> anyhow::Result<String> {
        crate::supervisor::tell(&format!("$ {self}"));
        let output = self
            .command()
            .stderr(Stdio::inherit())
            .output()
            .map_err(|error| self.spawn_error(&error))?;
        self.check(output.status)?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Runs it quietly and says whether it succeeded: for questions like "does this
    /// image exist?". A missing program is still an error.
    pub fn succeeds(self) -> anyhow::Result<bool> {
        let status = self
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|error| self.spawn_error(&error))?;
        Ok(status.success())
    }

    /// Runs it quietly, for a question asked often (`ps` about a pid): its stdout, trimmed,
    /// when it succeeds; `None` when it exits non-zero. A missing program is an error.
    pub fn read_quietly(self) -> anyhow::Result<Option<String>> {
        let output = self
            .command()
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map_err(|error| self.spawn_error(&error))?;
        Ok(output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned()))
    }

    /// Runs a checker (`promtool check rules`): whether it passed, and what it said, its
    /// stdout and stderr together; a failed check is an answer, not an error. A missing
    /// program is an error.
    pub fn verdict(self) -> anyhow::Result<(bool, String)> {
        crate::supervisor::tell(&format!("$ {self}"));
        let output = self
            .command()
            .stdin(Stdio::null())
            .output()
            .map_err(|error| self.spawn_error(&error))?;
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok((output.status.success(), said))
    }

    /// Like [`Cmd::run`], but cancellable: dropping the future (Ctrl+C in a `select!`)
    /// kills the program.
    pub async fn run_async(self) -> anyhow::Result<()> {
        crate::supervisor::tell(&format!("$ {self}"));
        let mut command = tokio::process::Command::from(self.command());
        command
            .stdin(Stdio::null())
            .stdout(std::io::stderr())
            .kill_on_drop(true);
        let status = command
            .status()
            .await
            .map_err(|error| self.spawn_error(&error))?;
        self.check(status)
    }

    /// Starts it in the background with its stdout piped to the caller (stderr
    /// dropped), killed when the handle is dropped: for servers that announce their
    /// address on their first line. The caller keeps reading stdout for the child's life
    /// or gives it a program that never writes again.
    pub fn spawn_piped(self) -> anyhow::Result<tokio::process::Child> {
        self.spawn_with(Stdio::null())
    }

    /// Like [`Cmd::spawn_piped`], stderr piped too: for programs whose error messages
    /// matter (`kubectl port-forward`, `kubectl logs -f`). The caller must keep reading
    /// both for the child's whole life: a program writing to a full pipe blocks, and a
    /// Go program (kubectl) dies of SIGPIPE once the reading end is closed.
    pub fn spawn_piped_with_stderr(self) -> anyhow::Result<tokio::process::Child> {
        self.spawn_with(Stdio::piped())
    }

    fn spawn_with(self, stderr: Stdio) -> anyhow::Result<tokio::process::Child> {
        crate::supervisor::tell(&format!("$ {self}"));
        let mut command = tokio::process::Command::from(self.command());
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        command.spawn().map_err(|error| self.spawn_error(&error))
    }

    /// Starts it in the background with stdout and stderr written to `log` (replaced), and
    /// killed if the returned handle is dropped.
    pub fn spawn_logged(self, log: &Path) -> anyhow::Result<tokio::process::Child> {
        crate::supervisor::tell(&format!("$ {self}  > {}", log.display()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(log)
            .with_context(|| format!("opening the log file {}", log.display()))?;
        let stderr = file
            .try_clone()
            .context("duplicating the log file handle")?;
        let mut command = tokio::process::Command::from(self.command());
        command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .kill_on_drop(true);
        command.spawn().map_err(|error| self.spawn_error(&error))
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        if self.own_process_group {
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
        }
        command
    }

    fn check(&self, status: ExitStatus) -> anyhow::Result<()> {
        if status.success() {
            Ok(())
        } else {
            bail!("{} failed ({status}): `{self}`", self.purpose)
        }
    }

    fn spawn_error(&self, error: &std::io::Error) -> anyhow::Error {
        let program = self.program.to_string_lossy();
        if error.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "{} needs `{program}`, which is not installed. {}",
                self.purpose,
                how_to_get(&program)
            )
        } else {
            anyhow::anyhow!("{} could not start `{program}`: {error}", self.purpose)
        }
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, value) in &self.envs {
            write!(f, "{}={} ", key.to_string_lossy(), quoted(value))?;
        }
        write!(f, "{}", quoted(&self.program))?;
        for arg in &self.args {
            write!(f, " {}", quoted(arg))?;
        }
        Ok(())
    }
}

/// Quotes a word for display only when a shell would need it.
fn quoted(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+%".contains(c));
    if plain {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Where a tool comes from: the dev shell has them all.
pub fn how_to_get(program: &str) -> String {
    let package = match program {
        "prometheus" | "promtool" => "Debian/Ubuntu: `apt-get install prometheus`",
        "grafana" | "grafana-server" => "the `grafana` package",
        "otelcol" | "otelcol-contrib" => "the `opentelemetry-collector` (or `-contrib`) package",
        "docker" => "Docker Engine or Docker Desktop",
        "kind" => "kind (https://kind.sigs.k8s.io)",
        "kubectl" => "kubectl",
        "tilt" => "Tilt",
        _ => "your package manager",
    };
    format!(
        "Run inside `nix develop` (the dev shell has every tool), or install it from {package}."
    )
}

/// Finds `program` on PATH, like `which`.
pub fn find_on_path(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && is_executable(&m))
        })
}

#[cfg(unix)]
fn is_executable(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    metadata.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_print_as_a_shell_would_read_them() {
        let cmd = Cmd::new("kubectl", "deploying")
            .env("KUBECONFIG", "/tmp/k config")
            .args([
                "--context",
                "kind-monitoring-demo",
                "apply",
                "-k",
                "manifests/overlays/kind",
            ]);
        assert_eq!(
            cmd.to_string(),
            "KUBECONFIG='/tmp/k config' kubectl --context kind-monitoring-demo apply -k manifests/overlays/kind"
        );
    }

    #[test]
    fn a_missing_program_is_named_with_how_to_get_it() {
        let error = Cmd::new("prometheus-that-does-not-exist", "starting Prometheus")
            .run()
            .expect_err("not installed");
        let message = error.to_string();
        assert!(
            message.contains("starting Prometheus needs `prometheus-that-does-not-exist`"),
            "{message}"
        );
        assert!(message.contains("nix develop"), "{message}");
    }

    #[test]
    fn a_failing_command_says_what_was_being_done() {
        let error = Cmd::new("false", "checking the flake")
            .run()
            .expect_err("fails");
        assert!(
            error.to_string().starts_with("checking the flake failed"),
            "{error}"
        );
    }
}

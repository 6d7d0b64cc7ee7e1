//! Cluster test helpers.
//!
//! Every cluster test talks to a real kube-apiserver through the real `kubectl` binary, with
//! the `KUBECONFIG` of the environment (tests/run.sh, or `tests/control-plane.sh up`). The
//! kubectl is `$MODELGATE_TOOLS_BIN/kubectl` when that is set (the version built for this
//! checkout), else the first `kubectl` on `PATH`.
//!
//! ```no_run
//! let cluster = modelgate_tests::Cluster::from_env();
//! cluster.ensure_crds().expect("CRDs install");
//! let ns = cluster.temp_namespace("example").expect("namespace");
//! cluster.kubectl_ok(&["get", "modeldeployments", "-n", ns.name()]).expect("get");
//! // the namespace is deleted when `ns` goes out of scope, also when the test panics
//! ```

pub mod harness;
pub mod load;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

/// The message a cluster test panics with when there is no cluster to talk to.
pub const NO_KUBECONFIG: &str =
    "cluster tests need KUBECONFIG; run tests/run.sh or tests/control-plane.sh up";

/// The CRDs `ensure_crds` installs, by name.
pub const CRD_NAMES: [&str; 2] = [
    "crd/modeldeployments.modelgate.dev",
    "crd/modelgroupaliases.modelgate.dev",
];

/// The workspace root (the parent of this crate).
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// What one kubectl run printed and how it ended.
#[derive(Debug, Clone)]
pub struct KubectlOutput {
    /// The command line, for messages.
    pub command: String,
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl KubectlOutput {
    /// stdout if kubectl succeeded, else an error carrying the command and both streams.
    pub fn ok(self) -> Result<String> {
        if self.success {
            Ok(self.stdout)
        } else {
            bail!(
                "`{}` failed\n--- stderr\n{}\n--- stdout\n{}",
                self.command,
                self.stderr,
                self.stdout
            )
        }
    }
}

/// A cluster reached through kubectl.
#[derive(Debug)]
pub struct Cluster {
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    /// A discovery cache of our own, so a cache from before the CRDs existed never leaks in.
    cache_dir: PathBuf,
}

impl Cluster {
    /// The cluster `KUBECONFIG` names. Panics with [`NO_KUBECONFIG`] when it is unset or empty.
    pub fn from_env() -> Cluster {
        Cluster::from_kubeconfig_var(std::env::var_os("KUBECONFIG"))
    }

    /// The cluster a `KUBECONFIG` value names (the first file of a list); panics with
    /// [`NO_KUBECONFIG`] when there is none.
    pub fn from_kubeconfig_var(var: Option<OsString>) -> Cluster {
        let kubeconfig = match var {
            Some(v) if !v.is_empty() => PathBuf::from(v),
            _ => panic!("{NO_KUBECONFIG}"),
        };
        let kubectl = match std::env::var_os("MODELGATE_TOOLS_BIN") {
            Some(dir) if !dir.is_empty() => Path::new(&dir).join("kubectl"),
            _ => PathBuf::from("kubectl"),
        };
        let cache_dir = std::env::temp_dir().join(format!(
            "modelgate-tests-kubectl-cache-{}-{}",
            std::process::id(),
            unique_suffix()
        ));
        Cluster {
            kubeconfig,
            kubectl,
            cache_dir,
        }
    }

    /// The kubeconfig this cluster uses.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    fn command(&self, args: &[&str]) -> (Command, String) {
        let mut cmd = Command::new(&self.kubectl);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .arg("--request-timeout=60s")
            .arg(format!("--cache-dir={}", self.cache_dir.display()))
            .args(args);
        let line = format!("kubectl {}", args.join(" "));
        (cmd, line)
    }

    /// Runs kubectl; errors only when it cannot be started.
    pub fn kubectl(&self, args: &[&str]) -> Result<KubectlOutput> {
        self.kubectl_with_stdin(args, None)
    }

    /// Runs kubectl and returns its stdout; errors when it exits non-zero.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String> {
        self.kubectl(args)?.ok()
    }

    /// Runs kubectl with `input` on its stdin (for `-f -`).
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Result<KubectlOutput> {
        self.kubectl_with_stdin(args, Some(input))
    }

    fn kubectl_with_stdin(&self, args: &[&str], input: Option<&str>) -> Result<KubectlOutput> {
        let (mut cmd, line) = self.command(args);
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| {
            format!(
                "cannot start {} (set MODELGATE_TOOLS_BIN or put kubectl on PATH; \
                 tests/install-tools.sh prints its directory)",
                self.kubectl.display()
            )
        })?;
        if let Some(input) = input {
            let mut stdin = child.stdin.take().context("kubectl stdin")?;
            stdin
                .write_all(input.as_bytes())
                .with_context(|| format!("writing stdin of `{line}`"))?;
        }
        let out = child
            .wait_with_output()
            .with_context(|| format!("waiting for `{line}`"))?;
        Ok(KubectlOutput {
            command: line,
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Installs (or re-applies) the CRDs from charts/modelgate-crds/templates with
    /// server-side apply, the way a user would, and waits until both are Established.
    /// Idempotent, so every test can call it.
    pub fn ensure_crds(&self) -> Result<()> {
        let dir = repo_root().join("charts/modelgate-crds/templates");
        let dir = dir.to_str().context("repository path is not UTF-8")?;
        // One field manager for every test that installs them, forced: a newer crdgen output
        // must replace what an earlier run installed.
        self.kubectl_ok(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=modelgate-tests",
            "--validate=strict",
            "-f",
            dir,
        ])
        .context("installing the CRDs")?;
        let mut args = vec!["wait", "--for=condition=Established", "--timeout=60s"];
        args.extend(CRD_NAMES);
        self.kubectl_ok(&args)
            .context("waiting for the CRDs to be Established")?;
        // Discovery fetched before the CRDs existed would hide the new resources for hours.
        if self.cache_dir.exists() {
            std::fs::remove_dir_all(&self.cache_dir).with_context(|| {
                format!("clearing kubectl's cache in {}", self.cache_dir.display())
            })?;
        }
        Ok(())
    }

    /// Creates a namespace with a unique name starting `mgt-<prefix>-`; it is deleted when the
    /// returned guard is dropped (also when the test panics).
    pub fn temp_namespace(&self, prefix: &str) -> Result<TempNamespace<'_>> {
        let name = namespace_name(prefix);
        self.kubectl_ok(&["create", "namespace", &name])
            .with_context(|| format!("creating namespace {name}"))?;
        self.kubectl_ok(&[
            "label",
            "namespace",
            &name,
            "app.kubernetes.io/created-by=modelgate-tests",
        ])?;
        Ok(TempNamespace {
            cluster: self,
            name,
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.cache_dir);
    }
}

/// A namespace that exists for one test; deleted on drop.
#[derive(Debug)]
pub struct TempNamespace<'a> {
    cluster: &'a Cluster,
    name: String,
}

impl TempNamespace<'_> {
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TempNamespace<'_> {
    fn drop(&mut self) {
        // No waiting: the namespace controller removes the contents in the background.
        match self.cluster.kubectl(&[
            "delete",
            "namespace",
            &self.name,
            "--wait=false",
            "--ignore-not-found",
        ]) {
            Ok(out) if out.success => {}
            Ok(out) => eprintln!(
                "warning: could not delete namespace {}: {}",
                self.name, out.stderr
            ),
            Err(e) => eprintln!("warning: could not delete namespace {}: {e:#}", self.name),
        }
    }
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{n}-{nanos:x}")
}

/// A valid, unique namespace name: `mgt-<prefix>-<pid>-<n>-<nanos>`, at most 63 characters.
pub fn namespace_name(prefix: &str) -> String {
    let prefix: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let suffix = format!("{}-{}", std::process::id(), unique_suffix());
    let room = 63 - "mgt--".len() - suffix.len();
    let prefix: String = prefix.chars().take(room).collect();
    let prefix = prefix.trim_matches('-');
    format!("mgt-{prefix}-{suffix}")
}

/// Calls `f` until it returns Ok or `timeout` passes; returns the last error then.
/// For what the apiserver publishes asynchronously (discovery, OpenAPI for `kubectl explain`).
pub fn retry<T>(timeout: Duration, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("still failing after {timeout:?}")));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// One table of `kubectl get` output: the header cells and each row's cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// The cell of `row` under the column named `column`.
    pub fn cell<'t>(&'t self, row: &'t [String], column: &str) -> Option<&'t str> {
        let i = self.header.iter().position(|h| h == column)?;
        row.get(i).map(String::as_str)
    }

    /// The row whose NAME cell is `name` (or ends with `/name`, as category listings print).
    pub fn row(&self, name: &str) -> Option<&[String]> {
        let i = self.header.iter().position(|h| h == "NAME")?;
        self.rows
            .iter()
            .find(|r| {
                r.get(i)
                    .is_some_and(|n| n == name || n.ends_with(&format!("/{name}")))
            })
            .map(Vec::as_slice)
    }
}

/// Parses `kubectl get` tables (several, separated by blank lines, for a category). Cells are
/// cut at the header's column starts, so empty cells stay empty instead of shifting columns.
/// Header names must not contain spaces (true of every column modelgate defines).
pub fn parse_tables(text: &str) -> Vec<Table> {
    let mut tables = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(header_line) = lines.next() {
        if header_line.trim().is_empty() {
            continue;
        }
        let mut starts = Vec::new();
        let mut header = Vec::new();
        let mut prev_space = true;
        for (i, c) in header_line.char_indices() {
            if c != ' ' && prev_space {
                starts.push(i);
            }
            prev_space = c == ' ';
        }
        for (k, &s) in starts.iter().enumerate() {
            let end = starts.get(k + 1).copied().unwrap_or(header_line.len());
            header.push(header_line[s..end].trim().to_string());
        }
        let mut rows = Vec::new();
        while let Some(line) = lines.peek() {
            if line.trim().is_empty() {
                break;
            }
            let line = lines.next().unwrap_or_default();
            let cells = starts
                .iter()
                .enumerate()
                .map(|(k, &s)| {
                    let end = match starts.get(k + 1) {
                        Some(&e) => e.min(line.len()),
                        None => line.len(),
                    };
                    line.get(s.min(end)..end).unwrap_or("").trim().to_string()
                })
                .collect();
            rows.push(cells);
        }
        tables.push(Table { header, rows });
    }
    tables
}

/// Collapses runs of whitespace to one space (kubectl explain wraps long descriptions).
pub fn squash_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(
        expected = "cluster tests need KUBECONFIG; run tests/run.sh or tests/control-plane.sh up"
    )]
    fn no_kubeconfig_panics_with_a_clear_message() {
        Cluster::from_kubeconfig_var(None);
    }

    #[test]
    #[should_panic(expected = "cluster tests need KUBECONFIG")]
    fn empty_kubeconfig_panics_too() {
        Cluster::from_kubeconfig_var(Some(OsString::new()));
    }

    #[test]
    fn namespace_names_are_unique_and_valid() {
        let long = "A_very_long_Test_name_that_goes_on_and_on_and_on_and_on_and_on_and_on";
        let a = namespace_name(long);
        let b = namespace_name(long);
        assert_ne!(a, b);
        for n in [&a, &b, &namespace_name("x")] {
            assert!(n.len() <= 63, "{n}");
            assert!(n.starts_with("mgt-"), "{n}");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{n}"
            );
            assert!(!n.ends_with('-') && !n.contains("--"), "{n}");
        }
    }

    #[test]
    fn tables_keep_empty_cells_in_place() {
        let text = "\
NAME   GROUP   MODEL      READY   REASON   AGE
a      g1      openai/x                    5s
bb     g2      azure/y    True    Ready    7s

NAME                                   ALIAS   TARGET   HIDDEN   READY   AGE
modelgroupalias.modelgate.dev/gpt-4            gpt-4o   false            1s
";
        let tables = parse_tables(text);
        assert_eq!(tables.len(), 2);
        assert_eq!(
            tables[0].header,
            ["NAME", "GROUP", "MODEL", "READY", "REASON", "AGE"]
        );
        let a = tables[0].row("a").expect("row a");
        assert_eq!(tables[0].cell(a, "MODEL"), Some("openai/x"));
        assert_eq!(tables[0].cell(a, "READY"), Some(""));
        assert_eq!(tables[0].cell(a, "AGE"), Some("5s"));
        let bb = tables[0].row("bb").expect("row bb");
        assert_eq!(tables[0].cell(bb, "REASON"), Some("Ready"));
        let alias = tables[1].row("gpt-4").expect("alias row");
        assert_eq!(tables[1].cell(alias, "ALIAS"), Some(""));
        assert_eq!(tables[1].cell(alias, "TARGET"), Some("gpt-4o"));
        assert_eq!(tables[1].cell(alias, "HIDDEN"), Some("false"));
    }

    #[test]
    fn whitespace_is_squashed() {
        assert_eq!(squash_whitespace("  a\n    b\tc  "), "a b c");
    }
}

//! `shardlog tune`: checks the host settings this broker depends on, and with `--apply`
//! changes the ones procfs and sysfs can change. It exists because shardlog's speed comes from
//! the machine as much as from its code (io_uring, O_DIRECT on a local disk, one pinned shard
//! per core): a disallowed io_uring, a tmpfs data dir, a powersave governor or a low locked
//! memory limit undo it silently, and each one is a file to know about. Like Redpanda's
//! `rpk redpanda tune`, it names each setting, the value found, the one wanted and why.
//!
//! The checks are pure functions of what was read ([`checks`]); reading and writing /proc and
//! /sys is a thin edge ([`host`]). A setting that cannot be read (containers, VMs, missing
//! drivers) is reported as such, never an error: `--check` exits 0 unless `--strict` is given
//! and a check failed. Nothing is changed without `--apply`; the O_DIRECT check writes one
//! probe file into the data dir and removes it.

pub mod checks;
pub mod host;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use checks::{Check, Status};

/// Client connections the broker accepts by default (`--connections-max`).
const CONNECTIONS_MAX_DEFAULT: u64 = 10_000;
/// File descriptors beyond connections and segment files: listeners, rings, logs, indexes.
const NOFILE_SPARE: u64 = 1024;

/// `shardlog tune`: what to check, and whether to change anything.
#[derive(Args, Debug, Clone)]
pub struct TuneArgs {
    /// Print each setting, the value found, the recommended one and why (the default)
    #[arg(long, conflicts_with = "apply")]
    pub check: bool,
    /// Change what can be changed (procfs/sysfs writes, as root), print what was done and
    /// what could not be, then check again
    #[arg(long)]
    pub apply: bool,
    /// Exit 1 when a check fails (FAIL; warnings do not count)
    #[arg(long)]
    pub strict: bool,
    /// The broker's data directory (its file system and disk are checked)
    #[arg(
        long,
        env = "SHARDLOG_DATA_DIR",
        value_name = "DIR",
        default_value = "shardlog-data"
    )]
    pub data_dir: PathBuf,
    /// Shards the broker will run [default: cores online]
    #[arg(long, env = "SHARDLOG_SHARDS", value_name = "N")]
    pub shards: Option<usize>,
}

/// Why `shardlog tune` could not do its job at all (a failed check is not an error).
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    /// Writing the report to stdout failed.
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs `shardlog tune`; exit code 0 unless the report cannot be written or `--strict` meets a
/// failed check.
pub fn run(args: &TuneArgs) -> ExitCode {
    match run_checks(args) {
        Ok(failed) if failed && args.strict => ExitCode::FAILURE,
        Ok(_) => ExitCode::SUCCESS,
        Err(TuneError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::FAILURE
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "Error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The host plan for `args`: shards default to the cores online, as the broker's do.
pub fn plan(args: &TuneArgs) -> host::Plan {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shards = args.shards.unwrap_or(cores).max(1);
    let segment_files = crate::storage::files::OPEN_FILES_MAX_DEFAULT as u64;
    host::Plan {
        data_dir: args.data_dir.clone(),
        shards,
        cores,
        nofile_needed: CONNECTIONS_MAX_DEFAULT + segment_files * shards as u64 + NOFILE_SPARE,
    }
}

/// Checks (and applies); true when a check ends in FAIL.
fn run_checks(args: &TuneArgs) -> Result<bool, TuneError> {
    let plan = plan(args);
    let mut out = std::io::stdout().lock();
    let (dir, exists) = host::existing_dir(&plan.data_dir);
    writeln!(out, "{}", header(&plan, &dir, exists))?;
    let mut results = checks::evaluate(&host::gather(&plan));
    if args.apply {
        writeln!(out, "\n{}", render(&results))?;
        let actions = apply(&results);
        writeln!(out, "Applied:\n{}", actions.join("\n"))?;
        results = checks::evaluate(&host::gather(&plan));
        writeln!(out, "\nAfter --apply:")?;
    }
    writeln!(out, "\n{}", render(&results))?;
    if !args.apply && results.iter().any(|c| !c.fix.is_empty()) {
        writeln!(
            out,
            "Run `shardlog tune --apply` as root to change the settings marked `apply:`."
        )?;
    }
    out.flush()?;
    Ok(results.iter().any(|c| c.status == Status::Fail))
}

fn header(plan: &host::Plan, dir: &std::path::Path, exists: bool) -> String {
    let where_ = if exists {
        format!("data dir {}", dir.display())
    } else {
        format!(
            "data dir {} (does not exist yet: checked {}, where it would be created)",
            plan.data_dir.display(),
            dir.display()
        )
    };
    format!(
        "shardlog tune: {where_}; {} shards on {} cores",
        plan.shards, plan.cores
    )
}

/// The report: per check a line `STATUS  NAME  found: X; recommended: Y`, then its reason,
/// what `--apply` would write or how to change it by hand, and a summary line.
pub fn render(results: &[Check]) -> String {
    let name_width = results.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in results {
        out.push_str(&format!(
            "{:<7}  {:<name_width$}  found: {}",
            c.status.label(),
            c.name,
            c.found
        ));
        if !c.recommended.is_empty() {
            out.push_str(&format!("; recommended: {}", c.recommended));
        }
        out.push('\n');
        let indent = " ".repeat(9);
        out.push_str(&format!("{indent}why: {}\n", c.why));
        if c.status != Status::Ok {
            for w in &c.fix {
                out.push_str(&format!(
                    "{indent}apply: {} > {}\n",
                    w.value,
                    w.path.display()
                ));
            }
            if let (true, Some(how)) = (c.fix.is_empty(), c.manual) {
                out.push_str(&format!("{indent}by hand: {how}\n"));
            }
        }
    }
    let count = |s: Status| results.iter().filter(|c| c.status == s).count();
    out.push_str(&format!(
        "{} checks: {} ok, {} warn, {} fail, {} unknown\n",
        results.len(),
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail),
        count(Status::Unknown)
    ));
    out
}

/// Does the writes of every check that is not ok; one line per write or per check it cannot
/// change.
fn apply(results: &[Check]) -> Vec<String> {
    let mut lines = Vec::new();
    for c in results.iter().filter(|c| c.status != Status::Ok) {
        if c.fix.is_empty() {
            let how = c.manual.unwrap_or("nothing --apply can write");
            lines.push(format!("  {}: not changed ({how})", c.name));
            continue;
        }
        for w in &c.fix {
            let line = match host::write(&w.path, &w.value) {
                Ok(()) => format!("  {}: wrote {} to {}", c.name, w.value, w.path.display()),
                Err(e) => format!(
                    "  {}: could not write {} to {}: {e}",
                    c.name,
                    w.value,
                    w.path.display()
                ),
            };
            lines.push(line);
        }
    }
    if lines.is_empty() {
        lines.push("  nothing to change".into());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::checks::Write;
    use super::*;

    fn check(name: &'static str, status: Status, fix: Vec<Write>) -> Check {
        Check {
            name,
            status,
            found: "60".into(),
            recommended: "1".into(),
            why: "because",
            fix,
            manual: Some("by hand"),
        }
    }

    #[test]
    fn the_report_names_status_values_reason_and_remedy() {
        let fix = vec![Write {
            path: "/proc/sys/vm/swappiness".into(),
            value: "1".into(),
        }];
        let out = render(&[
            check("swappiness", Status::Warn, fix),
            check("numa", Status::Ok, vec![]),
            check("rotational", Status::Fail, vec![]),
        ]);
        assert_eq!(
            out,
            "WARN     swappiness  found: 60; recommended: 1\n\
             \x20        why: because\n\
             \x20        apply: 1 > /proc/sys/vm/swappiness\n\
             ok       numa        found: 60; recommended: 1\n\
             \x20        why: because\n\
             FAIL     rotational  found: 60; recommended: 1\n\
             \x20        why: because\n\
             \x20        by hand: by hand\n\
             3 checks: 1 ok, 1 warn, 1 fail, 0 unknown\n"
        );
    }

    #[test]
    fn apply_writes_the_fixes_of_checks_that_are_not_ok_and_reports_each() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("swappiness");
        std::fs::write(&good, "60\n").unwrap();
        let bad = dir.path().join("no/such/file");
        let fix = |path: &std::path::Path| {
            vec![Write {
                path: path.to_path_buf(),
                value: "1".into(),
            }]
        };
        let lines = apply(&[
            check("swappiness", Status::Warn, fix(&good)),
            check("clocksource", Status::Warn, fix(&bad)),
            check("numa", Status::Ok, fix(&bad)),
            check("rotational", Status::Warn, vec![]),
        ]);
        assert_eq!(std::fs::read_to_string(&good).unwrap(), "1");
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(
            lines[0],
            format!("  swappiness: wrote 1 to {}", good.display())
        );
        assert!(
            lines[1].starts_with(&format!(
                "  clocksource: could not write 1 to {}: ",
                bad.display()
            )),
            "{}",
            lines[1]
        );
        assert_eq!(lines[2], "  rotational: not changed (by hand)");
        assert_eq!(apply(&[]), ["  nothing to change"]);
    }

    #[test]
    fn shards_default_to_the_cores_and_size_the_file_limit() {
        let args = TuneArgs {
            check: true,
            apply: false,
            strict: false,
            data_dir: "d".into(),
            shards: Some(3),
        };
        let p = plan(&args);
        assert_eq!(p.shards, 3);
        assert_eq!(p.nofile_needed, 10_000 + 3 * 1000 + 1024);
    }
}

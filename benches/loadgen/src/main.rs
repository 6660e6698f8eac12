//! shardlog-bench: a load generator that speaks the Kafka protocol (through librdkafka) to any
//! broker address and measures it the way the OpenMessaging Benchmark does — publish and
//! end-to-end latency in HdrHistograms, free of coordinated omission at fixed rates — then
//! writes the result as a table, `.hgrm` files, a JSON summary and an HTML report. `compare`
//! alternates two brokers; `report` draws several results on one chart. This file is the
//! command line; errors become `anyhow` here and nowhere else.

mod admin;
mod clientconf;
mod compare;
mod consumer;
mod crashloop;
mod latency;
mod monitor;
mod output;
mod payload;
mod procstat;
mod producer;
mod report;
mod run;
mod schedule;
mod seqset;
mod shared;
mod stats;
mod summary;
mod workload;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::procstat::Pid;
use crate::report::Series;
use crate::run::{RunOptions, RunOutput};
use crate::workload::{Overrides, Workload};

#[derive(Parser, Debug)]
#[command(
    name = "shardlog-bench",
    version,
    about = "Kafka-protocol load generator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a workload against one broker and write its results into --out
    Run(RunArgs),
    /// Run a workload against two brokers in turn (A, B, A, B, ...) and report the ratios
    Compare(CompareArgs),
    /// Draw several results (summary .json or .hgrm files) on one HTML report
    Report(ReportArgs),
    /// Kill -9 the broker over and over under an idempotent acks=all producer (and, with
    /// --hostile, hostile connections); report lost and duplicated records, restart times and
    /// peak RSS
    Crashloop(crashloop::CrashArgs),
}

/// Workload file and the overrides any run accepts.
#[derive(Args, Debug)]
struct WorkloadArgs {
    /// Workload TOML file (benches/loadgen/workloads/)
    #[arg(long, value_name = "FILE")]
    workload: PathBuf,
    /// Override the rate: "max", "N msg/s" or "N MiB/s"
    #[arg(long)]
    rate: Option<String>,
    /// Override the warm-up, seconds
    #[arg(long, value_name = "S")]
    warmup_s: Option<u64>,
    /// Override the measured duration, seconds
    #[arg(long, value_name = "S")]
    duration_s: Option<u64>,
    /// Override the topic name prefix
    #[arg(long)]
    topic_prefix: Option<String>,
    /// Override the producers' linger.ms (fractions allowed, e.g. 0.5)
    #[arg(long, value_name = "MS")]
    linger_ms: Option<f64>,
    /// Keep the topics after the run (they are always recreated before one)
    #[arg(long)]
    keep_topics: bool,
    /// No progress line
    #[arg(long)]
    quiet: bool,
}

impl WorkloadArgs {
    fn load(&self) -> anyhow::Result<Workload> {
        let overrides = Overrides {
            rate: self.rate.clone(),
            warmup_s: self.warmup_s,
            duration_s: self.duration_s,
            topic_prefix: self.topic_prefix.clone(),
            linger_ms: self.linger_ms,
        };
        Ok(Workload::load(&self.workload, &overrides)?)
    }
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Broker address (bootstrap.servers)
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap: String,
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Directory for summary.json, publish.hgrm, e2e.hgrm and report.html
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Name of this run in reports [default: the bootstrap address]
    #[arg(long)]
    label: Option<String>,
    /// Broker process to sample for CPU time and RSS
    #[arg(long, value_name = "PID")]
    broker_pid: Option<u32>,
}

#[derive(Args, Debug)]
struct CompareArgs {
    /// Broker A's address
    #[arg(long, value_name = "HOST:PORT")]
    a: String,
    /// Broker B's address
    #[arg(long, value_name = "HOST:PORT")]
    b: String,
    #[arg(long, default_value = "A")]
    a_label: String,
    #[arg(long, default_value = "B")]
    b_label: String,
    #[arg(long, value_name = "PID")]
    a_pid: Option<u32>,
    #[arg(long, value_name = "PID")]
    b_pid: Option<u32>,
    /// Rounds; each runs A then B
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Directory for every round's results, the combined ones, compare.json and report.html
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// HTML file to write
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[arg(long, default_value = "shardlog-bench report")]
    title: String,
    /// summary.json files of runs, or .hgrm files
    #[arg(required = true, value_name = "FILE")]
    inputs: Vec<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Run(args) => cmd_run(&args),
        Command::Compare(args) => cmd_compare(&args),
        Command::Report(args) => cmd_report(&args),
        Command::Crashloop(args) => {
            let report = crashloop::run(&args)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            anyhow::ensure!(
                report.lost == 0 && report.duplicated == 0,
                "records lost or duplicated"
            );
            Ok(())
        }
    }
}

fn cmd_run(args: &RunArgs) -> anyhow::Result<()> {
    let w = args.workload.load()?;
    let opts = RunOptions {
        bootstrap: args.bootstrap.clone(),
        label: args.label.clone().unwrap_or_else(|| args.bootstrap.clone()),
        broker_pid: args.broker_pid.map(Pid),
        keep_topics: args.workload.keep_topics,
        progress: !args.workload.quiet,
    };
    let out = run_and_write(&w, &opts, &args.out)?;
    println!("{}", summary::format_table(&out.summary));
    println!("results in {}", args.out.display());
    Ok(())
}

fn run_and_write(w: &Workload, opts: &RunOptions, dir: &Path) -> anyhow::Result<RunOutput> {
    tracing::info!(workload = %w.name, label = %opts.label, "starting run");
    let out = run::run(w, opts).with_context(|| format!("run against {}", opts.bootstrap))?;
    output::write_run(dir, &out.summary, &out.publish, &out.e2e)?;
    Ok(out)
}

/// One side of a comparison: its rounds and their merged histograms.
struct Side {
    opts: RunOptions,
    rounds: Vec<summary::RunSummary>,
    publish: hdrhistogram::Histogram<u64>,
    e2e: hdrhistogram::Histogram<u64>,
}

impl Side {
    fn new(bootstrap: &str, label: &str, pid: Option<u32>, wa: &WorkloadArgs) -> Side {
        Side {
            opts: RunOptions {
                bootstrap: bootstrap.to_string(),
                label: label.to_string(),
                broker_pid: pid.map(Pid),
                keep_topics: wa.keep_topics,
                progress: !wa.quiet,
            },
            rounds: Vec::new(),
            publish: latency::new_histogram(),
            e2e: latency::new_histogram(),
        }
    }

    fn run_round(&mut self, w: &Workload, dir: &Path) -> anyhow::Result<()> {
        let out = run_and_write(w, &self.opts, dir)?;
        latency::merge(&mut self.publish, &out.publish)?;
        latency::merge(&mut self.e2e, &out.e2e)?;
        self.rounds.push(out.summary);
        Ok(())
    }

    fn combined(&self, dir: &Path) -> anyhow::Result<summary::RunSummary> {
        let n = self.rounds.len();
        let label = format!(
            "{} ({n} round{})",
            self.opts.label,
            if n == 1 { "" } else { "s" }
        );
        let s = compare::combine(&label, &self.rounds, &self.publish, &self.e2e);
        output::write_run(dir, &s, &self.publish, &self.e2e)?;
        Ok(s)
    }
}

fn cmd_compare(args: &CompareArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rounds >= 1, "--rounds must be at least 1");
    let w = args.workload.load()?;
    let wa = &args.workload;
    let mut a = Side::new(&args.a, &args.a_label, args.a_pid, wa);
    let mut b = Side::new(&args.b, &args.b_label, args.b_pid, wa);
    for round in 1..=args.rounds {
        a.run_round(&w, &args.out.join(format!("round-{round}-A")))?;
        b.run_round(&w, &args.out.join(format!("round-{round}-B")))?;
    }
    let ca = a.combined(&args.out.join("combined-A"))?;
    let cb = b.combined(&args.out.join("combined-B"))?;
    let rounds = a
        .rounds
        .iter()
        .zip(&b.rounds)
        .map(|(x, y)| [compare::Figures::of(x), compare::Figures::of(y)])
        .collect();
    let comparison = compare::Comparison::new(&ca, &cb, rounds);
    let text = compare::format_comparison(&comparison);
    output::write(
        &args.out.join("compare.json"),
        &serde_json::to_string_pretty(&comparison)?,
    )?;
    let notes = format!("<pre>{}</pre>", report::escape(&text));
    let title = format!("{} vs {} — {}", ca.label, cb.label, w.name);
    let html = report::render(
        &title,
        &[Series::from_summary(&ca), Series::from_summary(&cb)],
        &notes,
    );
    output::write(&args.out.join(output::REPORT_FILE), &html)?;
    println!("{}", summary::format_table(&ca));
    println!("{}", summary::format_table(&cb));
    println!("{text}");
    println!("results in {}", args.out.display());
    Ok(())
}

fn cmd_report(args: &ReportArgs) -> anyhow::Result<()> {
    let series = output::load_series(&args.inputs)?;
    output::write(&args.out, &report::render(&args.title, &series, ""))?;
    println!("wrote {}", args.out.display());
    Ok(())
}

//! Result files: what a run writes into its output directory (`summary.json`, `publish.hgrm`,
//! `e2e.hgrm`, `report.html`) and how `report` reads results back (summary JSON files, or bare
//! `.hgrm` files from this tool or any other HdrHistogram user).

use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;

use crate::latency::{self, LatencyError};
use crate::report::{self, Metric, Series};
use crate::summary::RunSummary;

pub const SUMMARY_FILE: &str = "summary.json";
pub const PUBLISH_HGRM: &str = "publish.hgrm";
pub const E2E_HGRM: &str = "e2e.hgrm";
pub const REPORT_FILE: &str = "report.html";

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: {source}")]
    Hgrm { path: PathBuf, source: LatencyError },
    #[error("{0}: expected a .json summary or a .hgrm file")]
    Kind(PathBuf),
}

pub fn write(path: &Path, text: &str) -> Result<(), OutputError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| OutputError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read(path: &Path) -> Result<String, OutputError> {
    std::fs::read_to_string(path).map_err(|source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes one run's files into `dir`.
pub fn write_run(
    dir: &Path,
    summary: &RunSummary,
    publish: &Histogram<u64>,
    e2e: &Histogram<u64>,
) -> Result<(), OutputError> {
    let json = serde_json::to_string_pretty(summary).map_err(|source| OutputError::Json {
        path: dir.join(SUMMARY_FILE),
        source,
    })?;
    write(&dir.join(SUMMARY_FILE), &json)?;
    write(&dir.join(PUBLISH_HGRM), &latency::to_hgrm(publish))?;
    write(&dir.join(E2E_HGRM), &latency::to_hgrm(e2e))?;
    let title = format!("{} — {}", summary.label, summary.workload_name);
    let html = report::render(&title, &[Series::from_summary(summary)], "");
    write(&dir.join(REPORT_FILE), &html)
}

pub fn read_summary(path: &Path) -> Result<RunSummary, OutputError> {
    serde_json::from_str(&read(path)?).map_err(|source| OutputError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Which latency a `.hgrm` file holds, from its name.
pub fn metric_of(path: &Path) -> Metric {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if name.contains("publish") {
        Metric::Publish
    } else if name.contains("e2e") || name.contains("end-to-end") {
        Metric::EndToEnd
    } else {
        Metric::Other
    }
}

/// The label of a bare `.hgrm` file: its directory's name (a run directory), else its stem.
fn hgrm_label(path: &Path) -> String {
    let dir = path
        .parent()
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    let stem = path
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match (dir, metric_of(path)) {
        (Some(d), Metric::Publish | Metric::EndToEnd) => d,
        _ => stem,
    }
}

/// Reads `report` inputs into series; `.hgrm` files of one directory become one series.
pub fn load_series(paths: &[PathBuf]) -> Result<Vec<Series>, OutputError> {
    let mut series: Vec<Series> = Vec::new();
    for path in paths {
        let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase());
        match ext.as_deref() {
            Some("json") => series.push(Series::from_summary(&read_summary(path)?)),
            Some("hgrm") => {
                let curve =
                    latency::parse_hgrm(&read(path)?).map_err(|source| OutputError::Hgrm {
                        path: path.clone(),
                        source,
                    })?;
                let label = hgrm_label(path);
                let entry = (metric_of(path), curve);
                match series
                    .iter_mut()
                    .find(|s| s.label == label && s.summary.is_none())
                {
                    Some(s) => s.curves.push(entry),
                    None => series.push(Series {
                        label,
                        curves: vec![entry],
                        summary: None,
                    }),
                }
            }
            _ => return Err(OutputError::Kind(path.clone())),
        }
    }
    disambiguate(&mut series);
    Ok(series)
}

/// Makes labels unique so the legend tells series apart: a repeated label gets its workload's
/// name, and if that is not enough, its position.
fn disambiguate(series: &mut [Series]) {
    let repeated = |series: &[Series]| -> Vec<bool> {
        let labels: Vec<&str> = series.iter().map(|s| s.label.as_str()).collect();
        labels
            .iter()
            .map(|l| labels.iter().filter(|m| *m == l).count() > 1)
            .collect()
    };
    let first = repeated(series);
    for (s, rep) in series.iter_mut().zip(first) {
        if let (true, Some(summary)) = (rep, &s.summary) {
            s.label = format!("{} ({})", s.label, summary.workload_name);
        }
    }
    let second = repeated(series);
    for (i, (s, rep)) in series.iter_mut().zip(second).enumerate() {
        if rep {
            s.label = format!("{} #{}", s.label, i + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::{new_histogram, record_ns, LatencySummary};

    fn run_files(dir: &Path, label: &str) {
        let mut h = new_histogram();
        for v in 1..1000 {
            record_ns(&mut h, v * 10_000);
        }
        let s = RunSummary {
            label: label.into(),
            workload_name: "w".into(),
            publish_latency: LatencySummary::of(&h),
            e2e_latency: LatencySummary::of(&h),
            ..Default::default()
        };
        write_run(dir, &s, &h, &h).unwrap();
    }

    #[test]
    fn run_files_are_written_and_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run-a");
        run_files(&dir, "A");
        for f in [SUMMARY_FILE, PUBLISH_HGRM, E2E_HGRM, REPORT_FILE] {
            assert!(dir.join(f).is_file(), "{f}");
        }
        let s = read_summary(&dir.join(SUMMARY_FILE)).unwrap();
        assert_eq!(s.label, "A");
        assert_eq!(s.publish_latency.count, 999);
        let series = load_series(&[
            dir.join(SUMMARY_FILE),
            dir.join(PUBLISH_HGRM),
            dir.join(E2E_HGRM),
        ])
        .unwrap();
        assert_eq!(
            series.len(),
            2,
            "summary, plus one series for both hgrm files"
        );
        assert_eq!(series[1].label, "run-a");
        assert_eq!(series[1].curves.len(), 2);
        assert_eq!(series[1].curves[0].0, Metric::Publish);
        assert_eq!(series[1].curves[1].0, Metric::EndToEnd);
    }

    #[test]
    fn repeated_labels_are_told_apart() {
        let with = |label: &str, workload: Option<&str>| Series {
            label: label.into(),
            curves: Vec::new(),
            summary: workload.map(|w| RunSummary {
                workload_name: w.into(),
                ..Default::default()
            }),
        };
        let mut s = vec![
            with("shardlog", Some("max")),
            with("shardlog", Some("20mib")),
            with("kafka", Some("max")),
            with("x", None),
            with("x", None),
        ];
        disambiguate(&mut s);
        let labels: Vec<&str> = s.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "shardlog (max)",
                "shardlog (20mib)",
                "kafka",
                "x #4",
                "x #5"
            ]
        );
    }

    #[test]
    fn other_inputs() {
        assert_eq!(metric_of(Path::new("x/foo.hgrm")), Metric::Other);
        assert_eq!(hgrm_label(Path::new("x/foo.hgrm")), "foo");
        let tmp = tempfile::tempdir().unwrap();
        let txt = tmp.path().join("a.txt");
        std::fs::write(&txt, "x").unwrap();
        assert!(matches!(load_series(&[txt]), Err(OutputError::Kind(_))));
        assert!(load_series(&[tmp.path().join("missing.json")]).is_err());
    }
}

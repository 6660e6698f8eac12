//! What the compatibility matrix runs (clients, features, broker flags) and how its results
//! become the generated tables of docs/compatibility.md. Used by tests/compat_matrix.rs only.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use kafka_protocol::messages::ApiKey;

/// One client library installation and the driver that runs its cells.
pub struct Client {
    /// Short id: the runner's filter and part of each cell's topic prefix.
    pub id: &'static str,
    /// Where this installation comes from (npm, PyPI, Debian).
    pub source: &'static str,
    /// The interpreter; `/usr/bin/python3` is Debian's python, which sees Debian's packages.
    pub program: &'static str,
    /// The driver file in tests/clients/matrix.
    pub driver: &'static str,
}

pub const CLIENTS: &[Client] = &[
    Client {
        id: "kafkajs",
        source: "npm",
        program: "node",
        driver: "cell_kafkajs.js",
    },
    Client {
        id: "ck",
        source: "PyPI",
        program: "python3",
        driver: "cell_confluent.py",
    },
    Client {
        id: "ck-deb",
        source: "Debian",
        program: "/usr/bin/python3",
        driver: "cell_confluent.py",
    },
    Client {
        id: "kcat",
        source: "Debian",
        program: "python3",
        driver: "cell_kcat.py",
    },
    Client {
        id: "kp",
        source: "PyPI",
        program: "python3",
        driver: "cell_kafka_python.py",
    },
    Client {
        id: "kp-deb",
        source: "Debian",
        program: "/usr/bin/python3",
        driver: "cell_kafka_python.py",
    },
    Client {
        id: "aiokafka",
        source: "PyPI",
        program: "python3",
        driver: "cell_aiokafka.py",
    },
];

/// (feature id as the drivers know it, row label in the document).
pub const FEATURES: &[(&str, &str)] = &[
    ("codec-none", "produce + consume, no compression"),
    ("codec-gzip", "produce + consume, gzip"),
    ("codec-snappy", "produce + consume, snappy"),
    ("codec-lz4", "produce + consume, lz4"),
    ("codec-zstd", "produce + consume, zstd"),
    ("headers", "record headers (repeated key, binary value)"),
    ("null-key", "null keys"),
    ("null-value", "null values (tombstones)"),
    ("timestamp", "explicit create timestamps"),
    (
        "record-1mib",
        "a 1,048,000-byte record (max.message.bytes 1 MiB)",
    ),
    (
        "too-large",
        "a 1,100,000-byte record gets MESSAGE_TOO_LARGE",
    ),
    ("group", "consumer group, default assignor, 2 members"),
    ("commit-manual", "manual commit, a new member resumes there"),
    ("commit-auto", "auto commit, a new member resumes there"),
    ("seek-beginning", "replay from the beginning"),
    ("seek-offset", "seek to an offset"),
    ("seek-timestamp", "seek to a timestamp"),
    ("admin-topics", "admin: create + delete topics"),
    ("admin-partitions", "admin: create partitions"),
    ("admin-describe-configs", "admin: describe configs"),
    ("admin-alter-configs", "admin: alter configs"),
    ("admin-list-groups", "admin: list groups"),
    ("admin-describe-groups", "admin: describe groups"),
    (
        "admin-list-offsets",
        "admin: list offsets (earliest, latest, by time)",
    ),
    ("admin-delete-records", "admin: delete records"),
];

/// How the matrix's broker is started (the drivers' README assumes these).
pub const BROKER_FLAGS: &[&str] = &[
    "--num-partitions",
    "3",
    "--group-initial-rebalance-delay-ms",
    "200",
    "--group-min-session-timeout-ms",
    "1000",
];

/// One line of notes per API key the broker serves, shown beside its versions. The test fails
/// if the broker serves a key missing here or this lists a key it does not serve.
pub const API_NOTES: &[(i16, &str)] = &[
    (
        0,
        "v0–2 advertised for librdkafka's feature detection, served from v3 (see below)",
    ),
    (1, ""),
    (2, "-3 (max timestamp) answers the exact record, compressed batches too"),
    (3, ""),
    (
        8,
        "partitions of unknown topics get UNKNOWN_TOPIC_OR_PARTITION",
    ),
    (9, "v8+ asks for several groups at once"),
    (
        10,
        "groups only; the transaction key type answers COORDINATOR_NOT_AVAILABLE",
    ),
    (11, "MEMBER_ID_REQUIRED from v4, static membership"),
    (12, ""),
    (13, "v3+ removes several members at once"),
    (14, ""),
    (15, "an absent group is described as \"Dead\""),
    (16, "every group has type \"classic\""),
    (
        18,
        "v3+ finalized metadata.version 20 (3.8-IV0); higher versions get a v0 UNSUPPORTED_VERSION answer",
    ),
    (19, ""),
    (20, ""),
    (21, ""),
    (
        22,
        "idempotent producers; a transactional id gets INVALID_REQUEST (no transactions)",
    ),
    (
        23,
        "from the log's epoch boundaries; every partition is in epoch 0 until replication",
    ),
    (
        32,
        "topics; the broker's settings (given at startup or default, all read-only)",
    ),
    (
        33,
        "topics; broker settings answer INVALID_CONFIG saying how to set them",
    ),
    (35, "the data dir and each partition's size; v0 is not decodable"),
    (37, ""),
    (42, "Empty groups only"),
    (
        44,
        "topics, SET and DELETE; broker settings answer INVALID_CONFIG saying how to set them",
    ),
    (46, "always empty: one broker, nothing to reassign"),
    (47, ""),
    (48, "no entries: no quotas yet"),
    (60, ""),
    (61, "idempotent producers; no transactions"),
    (75, "paged by cursor, at most 2000 partitions a page"),
];

/// A cell's verdict, parsed from the driver's last line of output.
#[derive(Clone, Debug)]
pub enum Outcome {
    Pass(Option<String>),
    Lacks(String),
    Fail(String),
}

impl Outcome {
    pub fn parse(last_line: Option<&str>) -> Outcome {
        let line = last_line.unwrap_or("").trim();
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim().to_string();
        match word {
            "PASS" if rest.is_empty() => Outcome::Pass(None),
            "PASS" => Outcome::Pass(Some(rest)),
            "LACKS" if !rest.is_empty() => Outcome::Lacks(rest),
            "FAIL" => Outcome::Fail(rest),
            _ => Outcome::Fail(format!("no verdict line (last line: {line:?})")),
        }
    }

    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Pass(_) => "pass",
            Outcome::Lacks(_) => "n/a",
            Outcome::Fail(_) => "FAIL",
        }
    }

    fn note(&self) -> Option<&str> {
        match self {
            Outcome::Pass(note) => note.as_deref(),
            Outcome::Lacks(why) | Outcome::Fail(why) => Some(why),
        }
    }
}

/// One (client, feature) result, with what the document shows for them.
pub struct Cell {
    pub client_name: String,
    pub feature: &'static str,
    pub label: &'static str,
    pub outcome: Outcome,
}

/// A client's column heading: its reported version and where it was installed from.
pub fn column_name(client: &Client, version: &str) -> String {
    format!("{version} · {}", client.source)
}

pub fn cells(
    clients: &[&Client],
    versions: &[String],
    features: &[&'static str],
    outcomes: &BTreeMap<(&'static str, &'static str), Outcome>,
) -> Vec<Cell> {
    let mut cells = Vec::new();
    for feature in features {
        let label = FEATURES.iter().find(|f| f.0 == *feature).unwrap().1;
        for (client, version) in clients.iter().zip(versions) {
            cells.push(Cell {
                client_name: column_name(client, version),
                feature,
                label,
                outcome: outcomes[&(client.id, *feature)].clone(),
            });
        }
    }
    cells
}

/// The client × feature table, with numbered notes (one number per distinct note text).
pub fn client_table(cells: &[Cell]) -> String {
    let mut columns: Vec<&str> = Vec::new();
    for c in cells {
        if !columns.contains(&c.client_name.as_str()) {
            columns.push(&c.client_name);
        }
    }
    let mut notes: Vec<&str> = Vec::new();
    let mut out = summary(cells);
    out.push_str("\n| feature |");
    for c in &columns {
        let _ = write!(out, " {} |", c.replace(" · ", "<br>"));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(columns.len()));
    for row in cells.chunks(columns.len()) {
        let _ = write!(out, "\n| {} |", row[0].label);
        for cell in row {
            let _ = write!(out, " {} |", cell_text(&cell.outcome, &mut notes));
        }
    }
    out.push_str("\n\nNotes:\n\n");
    for (i, n) in notes.iter().enumerate() {
        let _ = writeln!(out, "{}. {}", i + 1, n.replace('|', "\\|"));
    }
    out
}

fn summary(cells: &[Cell]) -> String {
    let count = |w: &str| cells.iter().filter(|c| c.outcome.word() == w).count();
    format!(
        "{} cells: {} pass, {} not offered by the client (n/a), {} fail.\n",
        cells.len(),
        count("pass"),
        count("n/a"),
        count("FAIL")
    )
}

fn cell_text<'a>(outcome: &'a Outcome, notes: &mut Vec<&'a str>) -> String {
    let word = match outcome {
        Outcome::Fail(_) => "**FAIL**",
        o => o.word(),
    };
    match outcome.note() {
        None => word.to_string(),
        Some(note) => {
            let n = match notes.iter().position(|x| *x == note) {
                Some(i) => i + 1,
                None => {
                    notes.push(note);
                    notes.len()
                }
            };
            format!("{word} ({n})")
        }
    }
}

fn api_table(apis: &[(i16, i16, i16)]) -> String {
    let mut out = String::from("| key | API | versions | notes |\n|---|---|---|---|\n");
    for (key, lo, hi) in apis {
        let name = api_name(*key);
        let note = API_NOTES.iter().find(|n| n.0 == *key).map(|n| n.1);
        let note = note.unwrap_or_else(|| panic!("API_NOTES has no line for key {key}"));
        let versions = if lo == hi {
            format!("{lo}")
        } else {
            format!("{lo}–{hi}")
        };
        let _ = writeln!(out, "| {key} | {name} | {versions} | {note} |");
    }
    for (key, _) in API_NOTES {
        assert!(
            apis.iter().any(|a| a.0 == *key),
            "API_NOTES lists key {key}, which the broker does not serve"
        );
    }
    out
}

/// Replaces the text between `<!-- generated:NAME:begin ... -->` and `<!-- generated:NAME:end -->`.
fn replace_section(doc: &str, name: &str, body: &str) -> String {
    let begin = format!("<!-- generated:{name}:begin");
    let end = format!("<!-- generated:{name}:end -->");
    let b = doc
        .find(&begin)
        .unwrap_or_else(|| panic!("no {begin} marker"));
    let b = b + doc[b..].find("-->").unwrap() + 3;
    let e = doc.find(&end).unwrap_or_else(|| panic!("no {end} marker"));
    assert!(b <= e, "{name} markers out of order");
    format!("{}\n{}\n{}", &doc[..b], body.trim_end(), &doc[e..])
}

pub fn write_document(path: &Path, apis: &[(i16, i16, i16)], cells: &[Cell], usage: &str) {
    let doc = std::fs::read_to_string(path).unwrap();
    let doc = replace_section(&doc, "api-versions", &api_table(apis));
    let doc = replace_section(&doc, "clients", &client_table(cells));
    let doc = replace_section(&doc, "client-versions", usage);
    std::fs::write(path, doc).unwrap();
}

/// Versions used per (API key, client id), read from the broker's `shardlog::requests` trace
/// lines. Drivers set each client's client id to their cell prefix, `m-<client id>-<feature>`.
pub type Usage = BTreeMap<(i16, &'static str), std::collections::BTreeSet<i16>>;

pub fn usage_from_log(log: &str, clients: &[&'static Client]) -> Usage {
    let mut usage = Usage::new();
    for line in log.lines().filter(|l| l.contains("shardlog::requests")) {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|t| t.strip_prefix(name)?.strip_prefix('='))
        };
        let (Some(api), Some(version), Some(who)) =
            (field("api"), field("version"), field("client"))
        else {
            continue;
        };
        let client = clients
            .iter()
            .filter(|c| who.starts_with(&format!("m-{}-", c.id)))
            .max_by_key(|c| c.id.len());
        if let (Some(c), Ok(api), Ok(version)) = (client, api.parse(), version.parse()) {
            usage.entry((api, c.id)).or_default().insert(version);
        }
    }
    usage
}

/// API key × client: the versions each client sent in the run.
pub fn usage_table(usage: &Usage, clients: &[&Client], names: &[String]) -> String {
    let mut out = String::from("| key | API |");
    for n in names {
        let _ = write!(out, " {} |", n.replace(" · ", "<br>"));
    }
    let _ = write!(out, "\n|---|---|{}", "---|".repeat(names.len()));
    let keys: std::collections::BTreeSet<i16> = usage.keys().map(|k| k.0).collect();
    for key in keys {
        let _ = write!(out, "\n| {key} | {} |", api_name(key));
        for c in clients {
            let versions = usage.get(&(key, c.id)).map(ranges);
            let _ = write!(out, " {} |", versions.unwrap_or_default());
        }
    }
    out.push('\n');
    out
}

/// "0, 2–4, 7" from a set of versions.
fn ranges(v: &std::collections::BTreeSet<i16>) -> String {
    let mut parts: Vec<(i16, i16)> = Vec::new();
    for &x in v {
        match parts.last_mut() {
            Some((_, hi)) if *hi + 1 == x => *hi = x,
            _ => parts.push((x, x)),
        }
    }
    let text: Vec<String> = parts
        .iter()
        .map(|(lo, hi)| {
            if lo == hi {
                format!("{lo}")
            } else {
                format!("{lo}–{hi}")
            }
        })
        .collect();
    text.join(", ")
}

fn api_name(key: i16) -> String {
    ApiKey::try_from(key)
        .map(|k| format!("{k:?}"))
        .unwrap_or_else(|_| format!("unknown key {key}"))
}

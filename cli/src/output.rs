//! Output formats shared by every command that prints records.
//!
//! Lists print as a table (LXD's boxed style), JSON, YAML or CSV; single
//! records as text, JSON or YAML. JSON and YAML come from the serde views in
//! `view/`, so their field names are the stable, scriptable interface; the
//! table and CSV carry the same columns (CSV without a header, as `lxc`).

use anyhow::Result;
use clap::ValueEnum;
use serde::Serialize;

/// How a list is printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    #[default]
    Table,
    Json,
    Yaml,
    Csv,
}

/// How one record is printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum DetailFormat {
    #[default]
    Text,
    Json,
    Yaml,
}

/// Rows of text under column headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Table {
    pub(crate) headers: Vec<&'static str>,
    pub(crate) rows: Vec<Vec<String>>,
}

/// Prints `items` in `format`; `table` builds the rows for table and CSV.
pub(crate) fn render_list<T: Serialize>(
    format: Format,
    items: &[T],
    table: impl FnOnce(&[T]) -> Table,
) -> Result<String> {
    Ok(match format {
        Format::Json => to_json(items)?,
        Format::Yaml => serde_yaml::to_string(items)?,
        Format::Table => render_table(&table(items)),
        Format::Csv => render_csv(&table(items)),
    })
}

/// Prints one record in `format`; `text` builds the human form.
pub(crate) fn render_one<T: Serialize>(
    format: DetailFormat,
    item: &T,
    text: impl FnOnce(&T) -> String,
) -> Result<String> {
    Ok(match format {
        DetailFormat::Json => to_json(item)?,
        DetailFormat::Yaml => serde_yaml::to_string(item)?,
        DetailFormat::Text => text(item),
    })
}

/// Prints the server's warning when a read was served without a quorum's confirmation.
pub(crate) fn warn_stale<T>(resp: &tonic::Response<T>) {
    if let Some(v) = resp.metadata().get("x-shoal-stale") {
        eprintln!(
            "warning: {}",
            v.to_str().unwrap_or("this view may be stale")
        );
    }
}

/// Writes `text` to stdout; a closed pipe (`shoal list | head`) is not an error.
pub(crate) fn print(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn to_json<T: Serialize + ?Sized>(v: &T) -> Result<String> {
    let mut s = serde_json::to_string_pretty(v)?;
    s.push('\n');
    Ok(s)
}

/// A boxed table:
///
/// ```text
/// +------+---------+
/// | NAME | STATUS  |
/// +------+---------+
/// | c1   | Running |
/// +------+---------+
/// ```
pub(crate) fn render_table(t: &Table) -> String {
    let cell = |s: &str| s.replace(['\n', '\r', '\t'], " ");
    let mut widths: Vec<usize> = t.headers.iter().map(|h| h.chars().count()).collect();
    for row in &t.rows {
        for (i, c) in row.iter().enumerate().take(widths.len()) {
            widths[i] = widths[i].max(cell(c).chars().count());
        }
    }
    let rule: String = widths.iter().fold(String::from("+"), |mut s, w| {
        s.push_str(&"-".repeat(w + 2));
        s.push('+');
        s
    });
    let line = |cells: Vec<String>| {
        let mut s = String::from("|");
        for (i, w) in widths.iter().enumerate() {
            let c = cells.get(i).map(String::as_str).unwrap_or("");
            let pad = w - c.chars().count();
            s.push(' ');
            s.push_str(c);
            s.push_str(&" ".repeat(pad + 1));
            s.push('|');
        }
        s
    };
    let mut out = vec![rule.clone()];
    out.push(line(t.headers.iter().map(|h| h.to_string()).collect()));
    out.push(rule.clone());
    for row in &t.rows {
        out.push(line(row.iter().map(|c| cell(c)).collect()));
    }
    if !t.rows.is_empty() {
        out.push(rule);
    }
    out.join("\n") + "\n"
}

/// RFC 4180 CSV of the rows, without a header line.
pub(crate) fn render_csv(t: &Table) -> String {
    let field = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    t.rows
        .iter()
        .map(|r| r.iter().map(|c| field(c)).collect::<Vec<_>>().join(",") + "\n")
        .collect()
}

/// Bytes in binary units, as LXD prints them ("1.50MiB").
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2}{}", UNITS[u])
}

/// Unix milliseconds as RFC 3339 UTC ("2024-05-01T12:00:00Z"); `None` for 0.
pub(crate) fn rfc3339_ms(ms: i64) -> Option<String> {
    if ms <= 0 {
        return None;
    }
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    ))
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// CPU time in seconds with millisecond precision ("1.234s").
pub(crate) fn human_cpu(nanos: u64) -> String {
    format!(
        "{}.{:03}s",
        nanos / 1_000_000_000,
        nanos % 1_000_000_000 / 1_000_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Serialize)]
    struct Row {
        name: String,
        status: String,
        config: BTreeMap<String, String>,
    }

    fn sample() -> Vec<Row> {
        vec![
            Row {
                name: "c1".into(),
                status: "Running".into(),
                config: BTreeMap::from([("limits.memory".into(), "64MiB".into())]),
            },
            Row {
                name: "web-2".into(),
                status: "Stopped".into(),
                config: BTreeMap::new(),
            },
        ]
    }

    fn table(rows: &[Row]) -> Table {
        Table {
            headers: vec!["NAME", "STATUS"],
            rows: rows
                .iter()
                .map(|r| vec![r.name.clone(), r.status.clone()])
                .collect(),
        }
    }

    #[test]
    fn table_is_boxed_and_aligned() {
        let out = render_list(Format::Table, &sample(), table).unwrap();
        let want = "\
+-------+---------+
| NAME  | STATUS  |
+-------+---------+
| c1    | Running |
| web-2 | Stopped |
+-------+---------+
";
        assert_eq!(out, want);
    }

    #[test]
    fn empty_table_has_only_headers() {
        let out = render_list(Format::Table, &Vec::<Row>::new(), table).unwrap();
        assert_eq!(
            out,
            "+------+--------+\n| NAME | STATUS |\n+------+--------+\n"
        );
    }

    #[test]
    fn json_is_an_array_of_objects() {
        let out = render_list(Format::Json, &sample(), table).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v[0]["name"], "c1");
        assert_eq!(v[0]["config"]["limits.memory"], "64MiB");
        assert_eq!(v[1]["status"], "Stopped");
        assert!(out.ends_with("]\n"));
        let empty = render_list(Format::Json, &Vec::<Row>::new(), table).unwrap();
        assert_eq!(empty, "[]\n");
    }

    #[test]
    fn yaml_lists_records() {
        let out = render_list(Format::Yaml, &sample(), table).unwrap();
        assert!(
            out.starts_with("- name: c1\n  status: Running\n  config:\n    limits.memory: 64MiB\n"),
            "{out}"
        );
        let v: serde_yaml::Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(v[1]["name"].as_str(), Some("web-2"));
    }

    #[test]
    fn csv_quotes_when_needed() {
        let t = Table {
            headers: vec!["A", "B"],
            rows: vec![
                vec!["plain".into(), "a,b".into()],
                vec!["say \"hi\"".into(), "two\nlines".into()],
            ],
        };
        assert_eq!(
            render_csv(&t),
            "plain,\"a,b\"\n\"say \"\"hi\"\"\",\"two\nlines\"\n"
        );
        let out = render_list(Format::Csv, &sample(), table).unwrap();
        assert_eq!(out, "c1,Running\nweb-2,Stopped\n");
    }

    #[test]
    fn one_record_formats() {
        let r = &sample()[0];
        let text = render_one(DetailFormat::Text, r, |r| format!("Name: {}\n", r.name)).unwrap();
        assert_eq!(text, "Name: c1\n");
        let json = render_one(DetailFormat::Json, r, |_| String::new()).unwrap();
        assert!(json.starts_with("{\n  \"name\": \"c1\""), "{json}");
        let yaml = render_one(DetailFormat::Yaml, r, |_| String::new()).unwrap();
        assert!(yaml.starts_with("name: c1\n"), "{yaml}");
    }

    #[test]
    fn bytes_and_times() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(1023), "1023B");
        assert_eq!(human_bytes(1536), "1.50KiB");
        assert_eq!(human_bytes(64 << 20), "64.00MiB");
        assert_eq!(rfc3339_ms(0), None);
        assert_eq!(rfc3339_ms(1_000).as_deref(), Some("1970-01-01T00:00:01Z"));
        assert_eq!(
            rfc3339_ms(1_709_210_096_789).as_deref(),
            Some("2024-02-29T12:34:56Z")
        );
        assert_eq!(
            rfc3339_ms(951_782_400_000).as_deref(),
            Some("2000-02-29T00:00:00Z")
        );
        assert_eq!(human_cpu(1_234_567_890), "1.234s");
    }
}

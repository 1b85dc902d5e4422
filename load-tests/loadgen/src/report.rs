//! The results table: medians over runs of every metric, per gateway, with ratios to the
//! best peer and to direct. Results are lines of `gateway<TAB>metric<TAB>value`.

use std::collections::BTreeMap;
use std::fmt::Write;

/// Gateways in table order; the peers are the ones snigate is compared with.
const ROWS: [&str; 5] = ["snigate", "haproxy", "nginx", "sniproxy", "direct"];
const PEERS: [&str; 3] = ["haproxy", "nginx", "sniproxy"];

/// (metric, column title, higher is better); `{small}` and `{large}` are the idle counts.
const COLUMNS: [(&str, &str, bool); 12] = [
    ("conns_per_s", "conns/s", true),
    ("p50_us", "p50 µs", false),
    ("p99_us", "p99 µs", false),
    ("p999_us", "p99.9 µs", false),
    ("cpu_us_per_conn", "CPU µs/conn", false),
    ("up1_mbps", "1 conn up MB/s", true),
    ("down1_mbps", "1 conn down MB/s", true),
    ("up16_mbps", "16 conns up MB/s", true),
    ("down16_mbps", "16 conns down MB/s", true),
    ("kib_idle_small", "KiB/idle conn ({small})", false),
    ("kib_idle_large", "KiB/idle conn ({large})", false),
    ("errors", "failed conns", false),
];

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    Some(if !v.len().is_multiple_of(2) {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

fn show(v: f64) -> String {
    if v >= 100.0 {
        let n = v.round() as u64;
        let s = n.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The markdown table for `results`; the idle columns name their connection counts.
pub fn table(results: &str, idle: (usize, usize)) -> String {
    let mut values: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for line in results.lines() {
        let mut f = line.split('\t');
        if let (Some(g), Some(m), Some(v)) = (f.next(), f.next(), f.next()) {
            if let Ok(v) = v.trim().parse::<f64>() {
                values
                    .entry((g.to_owned(), m.to_owned()))
                    .or_default()
                    .push(v);
            }
        }
    }
    let fewest = values.values().map(Vec::len).min().unwrap_or(0);
    let most = values.values().map(Vec::len).max().unwrap_or(0);
    let samples = if fewest == most {
        most.to_string()
    } else {
        format!("{fewest} to {most}")
    };
    let mut med: BTreeMap<(String, String), f64> = BTreeMap::new();
    for (k, mut v) in values {
        if let Some(m) = median(&mut v) {
            med.insert(k, m);
        }
    }
    let get = |g: &str, m: &str| med.get(&(g.to_owned(), m.to_owned())).copied();
    let mut out = String::new();
    let titles: Vec<String> = COLUMNS
        .iter()
        .map(|c| {
            c.1.replace("{small}", &show(idle.0 as f64))
                .replace("{large}", &show(idle.1 as f64))
        })
        .collect();
    let _ = writeln!(out, "| gateway | {} |", titles.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(COLUMNS.len()));
    for g in ROWS {
        let cells: Vec<String> = COLUMNS
            .iter()
            .map(|(m, _, _)| get(g, m).map_or("—".to_owned(), show))
            .collect();
        let _ = writeln!(out, "| {g} | {} |", cells.join(" | "));
    }
    let ratio = |against: &dyn Fn(&str, bool) -> Option<f64>| -> Vec<String> {
        COLUMNS
            .iter()
            .map(
                |(m, _, higher)| match (get("snigate", m), against(m, *higher)) {
                    (Some(s), Some(b)) if b > 0.0 => format!("{:.2}×", s / b),
                    _ => "—".to_owned(),
                },
            )
            .collect()
    };
    let best = |m: &str, higher: bool| {
        let peers = PEERS.iter().filter_map(|p| get(p, m));
        if higher {
            peers.reduce(f64::max)
        } else {
            peers.reduce(f64::min)
        }
    };
    let _ = writeln!(
        out,
        "| **snigate ÷ best peer** | {} |",
        ratio(&best).join(" | ")
    );
    let _ = writeln!(
        out,
        "| **snigate ÷ direct** | {} |",
        ratio(&|m, _| get("direct", m)).join(" | ")
    );
    let _ = writeln!(
        out,
        "\nEach cell is the median of {samples} measurement(s). Ratios divide snigate's median by the best peer's (the highest where higher is better, the lowest where lower is better) and by direct's."
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios() {
        let text = "snigate\tconns_per_s\t100\nsnigate\tconns_per_s\t300\nsnigate\tconns_per_s\t200\nhaproxy\tconns_per_s\t100\nnginx\tconns_per_s\t150\nsnigate\tp99_us\t50\nhaproxy\tp99_us\t100\ndirect\tconns_per_s\t400\n";
        let t = table(text, (5000, 50000));
        assert!(t.contains("| snigate | 200 | — | 50.0 |"), "{t}");
        assert!(
            t.contains("| **snigate ÷ best peer** | 1.33× | — | 0.50× |"),
            "{t}"
        );
        assert!(t.contains("| **snigate ÷ direct** | 0.50× |"), "{t}");
        assert!(t.contains("KiB/idle conn (50,000)"), "{t}");
        assert!(t.contains("median of 1 to 3 measurement(s)"), "{t}");
    }
}

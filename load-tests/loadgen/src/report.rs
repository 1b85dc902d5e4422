//! The results tables: medians over runs of every metric, per gateway, with ratios to the
//! best peer and to direct; the open-loop table; and the targets, each a median of the
//! ratios taken within each run. Results are lines of `gateway<TAB>metric<TAB>value` with
//! an optional `<TAB>run`.

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

/// One result line.
struct Sample<'a> {
    gateway: &'a str,
    metric: &'a str,
    value: f64,
    run: u32,
}

fn samples(results: &str) -> Vec<Sample<'_>> {
    results
        .lines()
        .filter_map(|line| {
            let mut f = line.split('\t');
            let (gateway, metric) = (f.next()?, f.next()?);
            let value = f.next()?.trim().parse().ok()?;
            let run = f.next().and_then(|r| r.trim().parse().ok()).unwrap_or(0);
            Some(Sample {
                gateway,
                metric,
                value,
                run,
            })
        })
        .collect()
}

/// Each run's value of one metric for one gateway (the median, where a run measured it
/// more than once).
fn by_run(samples: &[Sample<'_>], gateway: &str, metric: &str) -> BTreeMap<u32, f64> {
    let mut runs: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
    for s in samples
        .iter()
        .filter(|s| s.gateway == gateway && s.metric == metric)
    {
        runs.entry(s.run).or_default().push(s.value);
    }
    runs.into_iter()
        .filter_map(|(r, mut v)| Some((r, median(&mut v)?)))
        .collect()
}

/// A per-run value derived from others: the CPU per connection (user plus system) or the
/// p99 added over direct's, at one open-loop load.
fn derived(samples: &[Sample<'_>], gateway: &str, metric: &str) -> BTreeMap<u32, f64> {
    if let Some(prefix) = metric.strip_suffix("_cpu_us") {
        let user = by_run(samples, gateway, &format!("{prefix}_user_us"));
        let sys = by_run(samples, gateway, &format!("{prefix}_sys_us"));
        return user
            .into_iter()
            .filter_map(|(r, u)| Some((r, u + sys.get(&r)?)))
            .collect();
    }
    if let Some(prefix) = metric.strip_suffix("_added_p99_us") {
        let p99 = format!("{prefix}_p99_us");
        let direct = by_run(samples, "direct", &p99);
        return by_run(samples, gateway, &p99)
            .into_iter()
            .filter_map(|(r, v)| Some((r, v - direct.get(&r)?)))
            .collect();
    }
    by_run(samples, gateway, metric)
}

fn median_of(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().collect();
    median(&mut v)
}

/// The open-loop loads measured, as metric prefixes (`open25`, `open50`, …), in order.
fn open_loads(samples: &[Sample<'_>]) -> Vec<String> {
    let mut loads: Vec<(u32, String)> = samples
        .iter()
        .filter_map(|s| {
            let prefix = s.metric.strip_suffix("_offered")?;
            Some((
                prefix.strip_prefix("open")?.parse().ok()?,
                prefix.to_owned(),
            ))
        })
        .collect();
    loads.sort();
    loads.dedup();
    loads.into_iter().map(|(_, p)| p).collect()
}

/// The open-loop table: per load and gateway, the medians over runs.
pub fn open_table(results: &str) -> String {
    let samples = samples(results);
    let loads = open_loads(&samples);
    if loads.is_empty() {
        return String::new();
    }
    const COLS: [(&str, &str); 10] = [
        ("offered", "offered/s"),
        ("conns_per_s", "done/s"),
        ("p50_us", "p50 µs"),
        ("p99_us", "p99 µs"),
        ("p999_us", "p99.9 µs"),
        ("added_p99_us", "p99 added over direct µs"),
        ("user_us", "user µs/conn"),
        ("sys_us", "system µs/conn"),
        ("cpu_us", "CPU µs/conn"),
        ("failed", "failed"),
    ];
    let mut out = String::new();
    let titles: Vec<&str> = COLS.iter().map(|c| c.1).collect();
    let _ = writeln!(out, "| load | gateway | {} |", titles.join(" | "));
    let _ = writeln!(out, "|---|---|{}", "---|".repeat(COLS.len()));
    for load in &loads {
        let pct = load.trim_start_matches("open");
        for g in ROWS {
            let cells: Vec<String> = COLS
                .iter()
                .map(|(m, _)| {
                    let metric = format!("{load}_{m}");
                    if g == "direct" && matches!(*m, "added_p99_us") {
                        return "—".to_owned();
                    }
                    median_of(derived(&samples, g, &metric).into_values())
                        .map_or("—".to_owned(), show)
                })
                .collect();
            let _ = writeln!(out, "| {pct}% | {g} | {} |", cells.join(" | "));
        }
    }
    out
}

/// Closed-loop connections/s with one and with two gateway threads, medians over runs.
pub fn threads_table(results: &str) -> String {
    let samples = samples(results);
    let mut out = String::new();
    for g in ["snigate", "haproxy", "nginx"] {
        let one = median_of(by_run(&samples, g, "conns_per_s").into_values());
        let two = median_of(by_run(&samples, g, "t2_conns_per_s").into_values());
        if two.is_none() {
            continue;
        }
        if out.is_empty() {
            let _ = writeln!(
                out,
                "| gateway | conns/s, 1 thread | conns/s, 2 threads | 2 ÷ 1 |"
            );
            let _ = writeln!(out, "|---|---|---|---|");
        }
        let ratio = match (one, two) {
            (Some(a), Some(b)) if a > 0.0 => format!("{:.2}×", b / a),
            _ => "—".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {g} | {} | {} | {ratio} |",
            one.map_or("—".to_owned(), show),
            two.map_or("—".to_owned(), show)
        );
    }
    out
}

/// One target: what it compares, and the ratio it must meet.
struct Target {
    what: &'static str,
    metric: String,
    /// Compared with HAProxy alone, rather than the best peer.
    against_haproxy: bool,
    higher_is_better: bool,
    bound: f64,
}

/// The targets of the cost work, each the median of ratios taken within each run.
pub fn targets(results: &str, idle_large: usize) -> String {
    let samples = samples(results);
    let t = |what, metric: &str, against_haproxy, higher_is_better, bound| Target {
        what,
        metric: metric.to_owned(),
        against_haproxy,
        higher_is_better,
        bound,
    };
    let list = [
        t(
            "CPU µs per connection at 50% load",
            "open50_cpu_us",
            false,
            false,
            0.90,
        ),
        t(
            "p99 added over direct at 50% load",
            "open50_added_p99_us",
            false,
            false,
            0.90,
        ),
        t(
            "closed-loop connections/s",
            "conns_per_s",
            false,
            true,
            1.00,
        ),
        t("1-connection throughput up", "up1_mbps", false, true, 1.20),
        t(
            "1-connection throughput down",
            "down1_mbps",
            false,
            true,
            1.20,
        ),
        t(
            "16-connection throughput up",
            "up16_mbps",
            false,
            true,
            1.20,
        ),
        t(
            "16-connection throughput down",
            "down16_mbps",
            false,
            true,
            1.20,
        ),
        t(
            "memory per idle connection, vs HAProxy",
            "kib_idle_large",
            true,
            false,
            0.85,
        ),
    ];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| target | snigate | best peer | ratio (median of per-run ratios) | bound | holds |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for target in list {
        let mine = derived(&samples, "snigate", &target.metric);
        let peers: Vec<(&str, BTreeMap<u32, f64>)> = if target.against_haproxy {
            vec![("haproxy", derived(&samples, "haproxy", &target.metric))]
        } else {
            PEERS
                .iter()
                .map(|p| (*p, derived(&samples, p, &target.metric)))
                .collect()
        };
        let mut ratios = Vec::new();
        let mut best_names: BTreeMap<&str, usize> = BTreeMap::new();
        for (run, s) in &mine {
            let best = peers
                .iter()
                .filter_map(|(p, v)| Some((*p, *v.get(run)?)))
                .reduce(|a, b| {
                    let better = if target.higher_is_better {
                        b.1 > a.1
                    } else {
                        b.1 < a.1
                    };
                    if better {
                        b
                    } else {
                        a
                    }
                });
            if let Some((name, b)) = best.filter(|(_, b)| *b > 0.0) {
                ratios.push(s / b);
                *best_names.entry(name).or_default() += 1;
            }
        }
        let ratio = median_of(ratios.iter().copied());
        let best_name = best_names
            .iter()
            .max_by_key(|(_, n)| **n)
            .map_or("—", |(p, _)| *p);
        let best_value = median_of(
            peers
                .iter()
                .filter(|(p, _)| *p == best_name)
                .flat_map(|(_, v)| v.values().copied()),
        );
        let holds = match ratio {
            Some(r) if target.higher_is_better => r >= target.bound,
            Some(r) => r <= target.bound,
            None => false,
        };
        let what = if target.metric == "kib_idle_large" {
            format!("{} ({} connections)", target.what, show(idle_large as f64))
        } else {
            target.what.to_owned()
        };
        let _ = writeln!(
            out,
            "| {what} | {} | {} ({best_name}) | {} over {} run(s) | {} {:.2}× | {} |",
            median_of(mine.values().copied()).map_or("—".to_owned(), show),
            best_value.map_or("—".to_owned(), show),
            ratio.map_or("—".to_owned(), |r| format!("{r:.2}×")),
            ratios.len(),
            if target.higher_is_better {
                "≥"
            } else {
                "≤"
            },
            target.bound,
            if holds { "yes" } else { "**no**" },
        );
    }
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

    #[test]
    fn targets_take_ratios_within_each_run() {
        // Run 1: snigate 50 vs best peer 40 (1.25); run 2: 30 vs 40 (0.75); run 3: 36 vs
        // 40 (0.90). The median of the per-run ratios is 0.90, although the ratio of
        // medians would be 36 / 40 too: here they agree; the verdict is "yes".
        let mut text = String::new();
        for (run, mine, peer) in [(1, 50.0, 40.0), (2, 30.0, 40.0), (3, 36.0, 40.0)] {
            for (g, v) in [("snigate", mine), ("sniproxy", peer), ("nginx", peer + 5.0)] {
                text.push_str(&format!("{g}\topen50_user_us\t{}\t{run}\n", v - 10.0));
                text.push_str(&format!("{g}\topen50_sys_us\t10\t{run}\n"));
                text.push_str(&format!("{g}\topen50_p99_us\t{}\t{run}\n", v + 100.0));
                text.push_str(&format!("{g}\topen50_offered\t1000\t{run}\n"));
            }
            text.push_str(&format!("direct\topen50_p99_us\t100\t{run}\n"));
            text.push_str(&format!("direct\topen50_offered\t1000\t{run}\n"));
        }
        let t = targets(&text, 7000);
        assert!(
            t.contains("| CPU µs per connection at 50% load | 36.0 | 40.0 (sniproxy) | 0.90× over 3 run(s) | ≤ 0.90× | yes |"),
            "{t}"
        );
        // The added p99 is each gateway's p99 less direct's in the same run.
        assert!(
            t.contains("| p99 added over direct at 50% load | 36.0 | 40.0 (sniproxy) | 0.90× over 3 run(s)"),
            "{t}"
        );
        assert!(t.contains("| closed-loop connections/s | — |"), "{t}");
        let o = open_table(&text);
        assert!(
            o.contains(
                "| 50% | snigate | 1,000 | — | — | 136 | — | 36.0 | 26.0 | 10.0 | 36.0 | — |"
            ),
            "{o}"
        );
    }
}

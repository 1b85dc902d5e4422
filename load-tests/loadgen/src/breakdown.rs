//! Where a gateway's time goes, per connection: system calls by name (from `strace -c`),
//! and user-space instructions and allocations (from a callgrind dump).

use std::collections::BTreeMap;

/// System calls by name, from the summary table `strace -c` writes.
pub fn strace_calls(summary: &str) -> BTreeMap<String, u64> {
    let mut calls = BTreeMap::new();
    for line in summary.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // % time, seconds, usecs/call, calls, [errors,] syscall; the total line ends in "total".
        if f.len() < 5 || f[0].parse::<f64>().is_err() {
            continue;
        }
        let Some(name) = f.last() else { continue };
        if *name == "total" {
            continue;
        }
        if let Ok(n) = f[3].parse::<u64>() {
            *calls.entry((*name).to_owned()).or_default() += n;
        }
    }
    calls
}

/// The functions that allocate: the C library's, and mimalloc's entry points (what
/// snigate's global allocator calls), none of which calls another of them.
const ALLOCATORS: [&str; 13] = [
    "malloc",
    "calloc",
    "realloc",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "mi_malloc",
    "mi_zalloc",
    "mi_calloc",
    "mi_realloc",
    "mi_malloc_aligned",
    "mi_zalloc_aligned",
    "mi_realloc_aligned",
];

/// From a callgrind dump: the total instructions (Ir) and the calls to each allocation
/// function.
pub fn callgrind(dump: &str) -> (u64, BTreeMap<String, u64>) {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut callee = String::new();
    let mut total = 0;
    let mut allocs: BTreeMap<String, u64> = BTreeMap::new();
    // Names are compressed: `cfn=(12) malloc` the first time, `cfn=(12)` after.
    let mut name_of = |spec: &str| -> String {
        let spec = spec.trim();
        match spec.split_once(')') {
            Some((id, rest)) if spec.starts_with('(') => {
                let rest = rest.trim();
                if !rest.is_empty() {
                    names.insert(id.to_owned(), rest.to_owned());
                }
                names.get(id).cloned().unwrap_or_default()
            }
            _ => spec.to_owned(),
        }
    };
    for line in dump.lines() {
        if let Some(spec) = line.strip_prefix("fn=") {
            name_of(spec);
        } else if let Some(spec) = line.strip_prefix("cfn=") {
            callee = name_of(spec);
        } else if let Some(rest) = line.strip_prefix("calls=") {
            // A function name may carry a recursion mark: `malloc'2`.
            let base = callee.split('\'').next().unwrap_or_default();
            if ALLOCATORS.contains(&base) {
                let n = rest
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                *allocs.entry(base.to_owned()).or_default() += n;
            }
        } else if let Some(t) = line
            .strip_prefix("summary:")
            .or_else(|| line.strip_prefix("totals:"))
        {
            if let Some(n) = t.split_whitespace().next().and_then(|n| n.parse().ok()) {
                total = n;
            }
        }
    }
    (total, allocs)
}

/// One markdown row: per-connection system calls (with the main ones by name),
/// instructions and allocations.
pub fn row(
    gateway: &str,
    strace: Option<(&str, f64)>,
    callgrind_dump: Option<(&str, f64)>,
) -> String {
    let per = |n: u64, conns: f64| n as f64 / conns.max(1.0);
    let (calls, by_name) = match strace {
        Some((summary, conns)) => {
            let calls = strace_calls(summary);
            let total: u64 = calls.values().sum();
            let mut named: Vec<(String, f64)> = calls
                .into_iter()
                .map(|(k, n)| (k, per(n, conns)))
                .filter(|(_, n)| *n >= 0.05)
                .collect();
            named.sort_by(|a, b| b.1.total_cmp(&a.1));
            let names: Vec<String> = named.iter().map(|(k, n)| format!("{k} {n:.1}")).collect();
            (format!("{:.1}", per(total, conns)), names.join(", "))
        }
        None => ("—".to_owned(), "—".to_owned()),
    };
    let (instructions, allocations) = match callgrind_dump {
        Some((dump, conns)) => {
            let (total, allocs) = callgrind(dump);
            let n: u64 = allocs.values().sum();
            let detail: Vec<String> = allocs
                .iter()
                .map(|(k, v)| format!("{k} {:.1}", per(*v, conns)))
                .collect();
            (
                format!("{:.0}", per(total, conns)),
                format!("{:.1} ({})", per(n, conns), detail.join(", ")),
            )
        }
        None => ("—".to_owned(), "—".to_owned()),
    };
    format!("| {gateway} | {calls} | {by_name} | {instructions} | {allocations} |")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_strace_and_callgrind() {
        let strace = "% time     seconds  usecs/call     calls    errors syscall\n------ ----------- ----------- --------- --------- ----------------\n 40.00    0.004000           2      2000           accept4\n 30.00    0.003000           1      3000      1000 splice\n------ ----------- ----------- --------- --------- ----------------\n100.00    0.007000           1      5000      1000 total\n";
        let c = strace_calls(strace);
        assert_eq!(c.get("accept4"), Some(&2000));
        assert_eq!(c.get("splice"), Some(&3000));
        assert_eq!(c.len(), 2);
        let dump = "events: Ir\nfn=(1) main\ncfn=(2) malloc\ncalls=30 0\n5 100\ncfn=(3) free\ncalls=30 0\n5 50\ncfn=(2)\ncalls=10 0\n5 10\nfn=(4) posix_memalign'2\ncfn=(4)\ncalls=5 0\n1 1\nsummary: 123456\n";
        let (total, allocs) = callgrind(dump);
        assert_eq!(total, 123456);
        assert_eq!(allocs.get("malloc"), Some(&40));
        assert_eq!(allocs.get("posix_memalign"), Some(&5));
        assert!(!allocs.contains_key("free"));
        let r = row("x", Some((strace, 1000.0)), Some((dump, 10.0)));
        assert_eq!(
            r,
            "| x | 5.0 | splice 3.0, accept4 2.0 | 12346 | 4.5 (malloc 4.0, posix_memalign 0.5) |"
        );
        // mimalloc's entry points count; its own frees and inner steps do not.
        let mi = "fn=(1) __rust_alloc\ncfn=(2) mi_malloc_aligned\ncalls=7 0\n1 1\nfn=(2)\ncfn=(3) _mi_malloc_generic\ncalls=2 0\n1 1\ncfn=(4) mi_free\ncalls=7 0\n1 1\n";
        let (_, allocs) = callgrind(mi);
        assert_eq!(
            allocs.into_iter().collect::<Vec<_>>(),
            [("mi_malloc_aligned".to_owned(), 7)]
        );
    }
}

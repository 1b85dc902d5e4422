//! The status page as HTML: one self-contained document, no scripts, fonts or links to
//! anything outside it. Every name and value goes through [`escape`], so an SNI or an
//! error text cannot add markup. Rows that need attention carry `class="attention"` and
//! a visible "⚠" mark.

use super::model::{ClusterRow, ListenerRow, Page, ProcessRow, RouteRow};
use std::fmt::Write;

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}\
table{border-collapse:collapse;margin:.4em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#f0f0f0}td.n{text-align:right;font-variant-numeric:tabular-nums}\
tr.attention td{background:#fde8e8}.mark{color:#b00;font-weight:bold}\
.up{color:#070}.down{color:#b00}.going{color:#a60}.muted{color:#777}\
ul.servers{margin:0;padding-left:1.1em}";

fn attention_cell(attention: bool) -> &'static str {
    if attention {
        "<td class=\"mark\" title=\"needs attention\">⚠</td>"
    } else {
        "<td></td>"
    }
}

fn row_open(attention: bool) -> &'static str {
    if attention {
        "<tr class=\"attention\">"
    } else {
        "<tr>"
    }
}

fn process(out: &mut String, p: &ProcessRow) {
    let _ = write!(
        out,
        "<h2>Process</h2><table id=\"process\"><tr><th>version</th><td>{}</td></tr>\
<tr><th>uptime</th><td>{}</td></tr><tr><th>worker PID</th><td>{}</td></tr>\
{}<th>drain</th><td class=\"drain\">{}",
        escape(&p.version),
        escape(&p.uptime),
        p.worker_pid,
        row_open(p.drain_attention),
        escape(&p.drain)
    );
    if !p.drains.is_empty() {
        out.push_str("<ul class=\"drains\">");
        for d in &p.drains {
            let _ = write!(out, "<li>{}</li>", escape(d));
        }
        out.push_str("</ul>");
    }
    out.push_str("</td></tr></table>");
}

fn listeners(out: &mut String, rows: &[ListenerRow]) {
    out.push_str(
        "<h2>Listeners</h2><table id=\"listeners\"><tr><th></th><th>listener</th><th>address</th>\
<th>open</th><th>accepted</th><th>refused</th><th>outcomes</th></tr>",
    );
    for l in rows {
        let outcomes: Vec<String> = l
            .outcomes
            .iter()
            .map(|(o, n)| format!("{} {n}", escape(o)))
            .collect();
        let _ = write!(
            out,
            "{}{}<td class=\"name\">{}</td><td>{}</td><td class=\"n open\">{}</td><td class=\"n\">{}</td>\
<td class=\"n\">{}</td><td>{}</td></tr>",
            row_open(false),
            attention_cell(false),
            escape(&l.name),
            escape(&l.address),
            l.open,
            l.accepted,
            l.refused,
            escape(&outcomes.join(", "))
        );
    }
    out.push_str("</table>");
}

fn routes(out: &mut String, rows: &[RouteRow], page: usize, pages: usize, total: usize) {
    let _ = write!(
        out,
        "<h2>Routes</h2><p class=\"muted\">{total} routes; page {} of {pages}.",
        page + 1
    );
    if page > 0 {
        let _ = write!(out, " <a href=\"?page={}\">previous</a>", page - 1);
    }
    if page + 1 < pages {
        let _ = write!(out, " <a href=\"?page={}\">next</a>", page + 1);
    }
    out.push_str(
        "</p><table id=\"routes\"><tr><th></th><th>SNI</th><th>upstream</th><th>kind</th><th>open</th>\
<th>bytes up</th><th>bytes down</th><th>connect errors</th><th>last connect</th></tr>",
    );
    for r in rows {
        let upstream = if r.servers.is_empty() {
            escape(&r.upstream)
        } else {
            let mut list = String::from("<ul class=\"servers\">");
            for s in &r.servers {
                let class = match s.state.as_str() {
                    "up" | "backup" => "up",
                    "down" => "down",
                    _ => "going",
                };
                let _ = write!(
                    list,
                    "<li><span class=\"server\">{}</span> <span class=\"state {class}\">{}</span> \
<span class=\"muted\">open {}, failures {}{}</span></li>",
                    escape(&s.address),
                    escape(&s.state),
                    s.open,
                    s.failures,
                    escape(&s.check)
                );
            }
            list.push_str("</ul>");
            list
        };
        let _ = write!(
            out,
            "{}{}<td class=\"sni\">{}</td><td>{upstream}</td><td>{}</td><td class=\"n open\">{}</td>\
<td class=\"n bytes-up\">{}</td><td class=\"n bytes-down\">{}</td><td class=\"n errors\">{}</td><td class=\"n\">{}</td></tr>",
            row_open(r.attention),
            attention_cell(r.attention),
            escape(&r.sni),
            escape(&r.kind),
            r.open,
            r.bytes_up,
            r.bytes_down,
            r.connect_errors,
            escape(&r.last_connect)
        );
    }
    out.push_str("</table>");
}

fn clusters(out: &mut String, rows: &[ClusterRow]) {
    if rows.is_empty() {
        return;
    }
    out.push_str(
        "<h2>Clusters</h2><table id=\"clusters\"><tr><th></th><th>cluster</th><th>brokers advertised</th>\
<th>routable</th><th>coverage</th><th>last successful refresh</th><th>last error</th></tr>",
    );
    for c in rows {
        let _ = write!(
            out,
            "{}{}<td class=\"name\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n coverage\">{}</td>\
<td>{}</td><td>{}</td></tr>",
            row_open(c.attention),
            attention_cell(c.attention),
            escape(&c.name),
            c.advertised,
            c.routable,
            escape(&c.coverage),
            escape(&c.last_success),
            escape(&c.last_error)
        );
    }
    out.push_str("</table>");
}

/// The whole page. With `refresh`, it asks the browser to reload itself that often.
pub fn render(page: &Page, refresh: Option<u32>) -> String {
    let mut out = String::with_capacity(4096 + 400 * page.routes.len());
    out.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    if let Some(secs) = refresh {
        let _ = write!(out, "<meta http-equiv=\"refresh\" content=\"{secs}\">");
    }
    let _ = write!(
        out,
        "<title>snigate status</title><style>{STYLE}</style></head><body><h1>snigate status</h1>\
<p class=\"muted\">As of {}. ",
        escape(&page.at)
    );
    match refresh {
        Some(secs) => {
            let _ = write!(
                out,
                "Reloads every {secs} s: <a href=\"?\">stop</a>.</p>"
            );
        }
        None => out.push_str(
            "<a href=\"?refresh=5\">Reload every 5 s</a>. Same counters as <a href=\"/metrics\">/metrics</a>; \
routes as JSON at <a href=\"/routes?format=json\">/routes?format=json</a>.</p>",
        ),
    }
    let attention = page.routes.iter().filter(|r| r.attention).count()
        + page.clusters.iter().filter(|c| c.attention).count()
        + usize::from(page.process.drain_attention);
    if attention > 0 {
        let _ = write!(
            out,
            "<p class=\"mark\" id=\"attention\">⚠ {attention} row(s) need attention.</p>"
        );
    }
    process(&mut out, &page.process);
    listeners(&mut out, &page.listeners);
    clusters(&mut out, &page.clusters);
    routes(
        &mut out,
        &page.routes,
        page.page,
        page.pages,
        page.total_routes,
    );
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::model::{ProcessRow, ServerRow};

    #[test]
    fn names_and_errors_cannot_add_markup() {
        assert_eq!(
            escape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        let page = Page {
            at: "now".into(),
            process: ProcessRow::default(),
            listeners: vec![],
            routes: vec![RouteRow {
                sni: "<b>evil</b>.example.test".into(),
                upstream: "x".into(),
                kind: "static".into(),
                servers: vec![ServerRow {
                    address: "<i>s</i>:1".into(),
                    state: "down".into(),
                    open: 0,
                    failures: 2,
                    check: "".into(),
                }],
                attention: true,
                ..RouteRow::default()
            }],
            clusters: vec![ClusterRow {
                name: "c".into(),
                last_error: "<img src=x onerror=alert(1)>".into(),
                attention: true,
                ..ClusterRow::default()
            }],
            page: 0,
            pages: 1,
            total_routes: 1,
        };
        let html = render(&page, None);
        assert!(!html.contains("<b>evil") && html.contains("&lt;b&gt;evil"));
        assert!(!html.contains("<img") && !html.contains("<i>s"));
        assert!(!html.contains("<script"), "no scripts at all");
        assert_eq!(html.matches("class=\"attention\"").count(), 2);
        assert!(html.contains("2 row(s) need attention"));
        assert!(!html.contains("http-equiv"), "no reload unless asked");
        assert!(render(&page, Some(5)).contains("http-equiv=\"refresh\" content=\"5\""));
    }
}

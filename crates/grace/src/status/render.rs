//! The page's HTML, rendered once on the server for the page, its
//! script-less snapshot and each event alike: the browser's script only
//! swaps it in.

use std::fmt::Write as _;

use super::{RatePoint, Snapshot};

/// Certificates closer than this to expiry are flagged.
const EXPIRY_WARNING_DAYS: i64 = 14;

const SHELL: &str = include_str!("status.html");

/// The whole page.
pub(super) fn page(snapshot: &Snapshot, events_path: &str) -> String {
    SHELL
        .replacen("{{body}}", &body(snapshot), 1)
        .replacen("{{events}}", &escape(events_path), 1)
}

/// What goes inside `<main>`.
pub(super) fn body(s: &Snapshot) -> String {
    let st = &s.status;
    let mut h = String::with_capacity(4096);
    let _ = write!(
        h,
        "<h1>grace {}</h1>\n<dl>\n<dt>pid</dt><dd id=\"pid\">{}</dd>\n\
         <dt>uptime</dt><dd>{}</dd>\n<dt>config</dt><dd><code>{}</code></dd>\n\
         <dt>generation</dt><dd id=\"generation\">{}</dd>\n\
         <dt>phase</dt><dd id=\"phase\">{}</dd>\n\
         <dt>connections</dt><dd id=\"connections\">{}</dd>\n\
         <dt>requests in flight</dt><dd id=\"requests\">{}</dd>\n</dl>\n",
        escape(&s.version),
        st.pid,
        duration(st.uptime_secs),
        escape(st.config_path.as_deref().unwrap_or("(embedded)")),
        st.generation,
        st.phase,
        st.connections,
        st.requests,
    );
    drain(&mut h, s);
    reloads(&mut h, s);
    upgrades(&mut h, s);
    listeners(&mut h, s);
    certificates(&mut h, s);
    rates(&mut h, &s.rates);
    apps(&mut h, s);
    h
}

fn drain(h: &mut String, s: &Snapshot) {
    let Some(left) = s.deadline_secs else {
        return;
    };
    let st = &s.status;
    let (conns0, reqs0) = s
        .drain_started_with
        .unwrap_or((st.connections, st.requests));
    let until_ms = (super::unix_now() + left) * 1000.0;
    let _ = write!(
        h,
        "<section id=\"drain\"><h2>Drain</h2>\n<dl>\n\
         <dt>connections left</dt><dd><progress max=\"{}\" value=\"{}\"></progress> {} of {}</dd>\n\
         <dt>requests left</dt><dd><progress max=\"{}\" value=\"{}\"></progress> {} of {}</dd>\n\
         <dt>deadline in</dt><dd data-until=\"{:.0}\">{:.1} s</dd>\n</dl></section>\n",
        conns0.max(1),
        st.connections,
        st.connections,
        conns0,
        reqs0.max(1),
        st.requests,
        st.requests,
        reqs0,
        until_ms,
        left,
    );
}

fn reloads(h: &mut String, s: &Snapshot) {
    h.push_str("<h2>Reloads</h2>\n");
    if s.reloads.is_empty() {
        h.push_str("<p class=\"none\">none since start</p>\n");
        return;
    }
    h.push_str(
        "<table id=\"reloads\"><tr><th>time</th><th>trigger</th><th>result</th>\
         <th>generation</th><th>error</th></tr>\n",
    );
    for r in &s.reloads {
        let class = if r.error.is_some() { "bad" } else { "ok" };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{}</td><td>{}</td><td><code>{}</code></td></tr>",
            clock(r.at),
            escape(&r.trigger),
            mark(r.result, r.error.is_none()),
            r.generation,
            escape(r.error.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</table>\n");
}

fn upgrades(h: &mut String, s: &Snapshot) {
    h.push_str("<h2>Upgrades</h2>\n");
    if s.upgrades.is_empty() {
        h.push_str("<p class=\"none\">none since start</p>\n");
        return;
    }
    h.push_str(
        "<table id=\"upgrades\"><tr><th>time</th><th>old pid</th><th>new pid</th>\
         <th>ready after</th><th>result</th><th>why</th></tr>\n",
    );
    for u in &s.upgrades {
        let class = if u.error.is_some() { "bad" } else { "ok" };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{}</td><td><code>{}</code></td></tr>",
            clock(u.at),
            u.old_pid,
            u.new_pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            u.ready_secs.map_or_else(|| "-".to_owned(), |s| format!("{:.0} ms", s * 1000.0)),
            mark(u.result, u.error.is_none()),
            escape(u.error.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</table>\n");
}

fn listeners(h: &mut String, s: &Snapshot) {
    if s.listeners.is_empty() {
        return;
    }
    let _ = write!(
        h,
        "<h2>Listeners</h2>\n<p>{} connections open across them</p>\n\
         <table id=\"listeners\"><tr><th>kind</th><th>address</th><th>open connections</th></tr>\n",
        s.status.connections
    );
    for l in &s.listeners {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            l.kind,
            escape(&l.addr),
            l.connections
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
        );
    }
    h.push_str("</table>\n");
}

fn certificates(h: &mut String, s: &Snapshot) {
    if s.status.certificates.is_empty() {
        return;
    }
    h.push_str(
        "<h2>Certificates</h2>\n<table id=\"certificates\"><tr><th>served for (SNI)</th>\
         <th>subject</th><th>expires</th><th>days left</th></tr>\n",
    );
    let now = super::unix_now() as i64;
    for c in &s.status.certificates {
        let days = (c.not_after - now).div_euclid(86_400);
        // The number is always there; the colour and the word only repeat it.
        let (class, note) = if days < EXPIRY_WARNING_DAYS {
            (" class=\"warn\"", " (renew soon)")
        } else {
            ("", "")
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td{class}>{days}{note}</td></tr>",
            escape(&c.name),
            escape(&c.subject),
            clock(c.not_after as f64),
        );
    }
    h.push_str("</table>\n");
}

const CLASSES: [(&str, &str); 5] = [
    ("1xx", "#888"),
    ("2xx", "#1a7f37"),
    ("3xx", "#0969da"),
    ("4xx", "#bf8700"),
    ("5xx", "#cf222e"),
];

fn rates(h: &mut String, points: &[RatePoint]) {
    let Some(last) = points.last() else {
        return;
    };
    // The legend names each line's class in its colour, with its number:
    // the colour is never the only signal.
    h.push_str("<h2>Requests per second</h2>\n<p id=\"rates\">latest:");
    for ((name, colour), rate) in CLASSES.iter().zip(last.per_sec) {
        let _ = write!(h, " <b style=\"color:{colour}\">{name}</b> {rate:.1}");
    }
    let (w, ht) = (600.0, 120.0);
    let max = points
        .iter()
        .flat_map(|p| p.per_sec)
        .fold(1.0_f64, f64::max);
    let span = (last.at - points[0].at).max(1.0);
    let _ = writeln!(h, " (peak {max:.1}/s, last {span:.0} s)</p>");
    let _ = write!(
        h,
        "<svg width=\"{w}\" height=\"{ht}\" role=\"img\" aria-label=\"requests per second by status class, peak {max:.1}\">"
    );
    for (i, (name, colour)) in CLASSES.iter().enumerate() {
        if points.iter().all(|p| p.per_sec[i] == 0.0) {
            continue;
        }
        let _ = write!(
            h,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\""
        );
        for p in points {
            let x = (p.at - points[0].at) / span * w;
            let y = ht - p.per_sec[i] / max * (ht - 4.0);
            let _ = write!(h, "{x:.0},{y:.0} ");
        }
        let _ = write!(h, "\"><title>{name}</title></polyline>");
    }
    h.push_str("</svg>\n");
}

fn apps(h: &mut String, s: &Snapshot) {
    let Some(apps) = &s.apps else {
        return;
    };
    h.push_str(
        "<h2>Application</h2>\n<table id=\"apps\"><tr><th>generation</th><th>pid</th>\
         <th>state</th><th>started</th><th>restarts</th></tr>\n",
    );
    for a in apps {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            a.generation,
            a.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            escape(&a.state),
            clock(a.started_at),
            a.restarts,
        );
    }
    h.push_str("</table>\n");
}

/// The result in words with a sign: colour never carries it alone.
fn mark(result: &str, ok: bool) -> String {
    format!("{} {}", if ok { "✓" } else { "✗" }, escape(result))
}

fn duration(secs: f64) -> String {
    let s = secs as u64;
    match s {
        0..60 => format!("{secs:.0} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` from Unix seconds.
fn clock(unix: f64) -> String {
    let t = crate::civil_time::Civil::from_unix(unix as i64);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

fn escape(text: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_utc_civil_time() {
        assert_eq!(clock(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(clock(1_796_000_030.0), "2026-11-30 00:53:50 UTC");
        assert_eq!(clock(951_782_400.0), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}

//! The CLI's progress bar: on a terminal one line redrawn in place, in a log a line
//! every few seconds (and no second line of the same).
//!
//! `[=========>                    ]  45,000/100,000  45%  12,345 rows/s  ETA 4s  3 rejected`

use std::{
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

/// How often a log (stderr not a terminal) gets a line.
const LOG_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Shown {
    done: i64,
    total: i64,
    note: String,
}

pub struct ProgressBar {
    /// What is counted: rows, events.
    unit: &'static str,
    started: Instant,
    /// Done by an earlier run: not this run's speed.
    before: i64,
    terminal: bool,
    last_line: Option<Instant>,
    last: Shown,
    /// What the last line written showed.
    printed: Option<Shown>,
}

impl ProgressBar {
    pub fn new(unit: &'static str, before: i64) -> Self {
        Self {
            unit,
            started: Instant::now(),
            before,
            terminal: std::io::stderr().is_terminal(),
            last_line: None,
            last: Shown::default(),
            printed: None,
        }
    }

    /// `done` of `total`, and a note after the figures (empty for none).
    pub fn show(&mut self, done: i64, total: i64, note: impl Into<String>) {
        self.last = Shown { done, total, note: note.into() };
        if !self.terminal && self.last_line.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            return;
        }
        self.last_line = Some(Instant::now());
        self.printed = Some(self.last.clone());
        let line = render(self.unit, &self.last, self.before, self.started.elapsed());
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal { write!(err, "\r{line}\x1b[K") } else { writeln!(err, "{line}") };
        let _ = err.flush();
    }

    /// The last state, once more, and the line ended (nothing if nothing was shown).
    pub fn finish(&mut self) {
        if self.last_line.is_none() || (!self.terminal && self.printed.as_ref() == Some(&self.last)) {
            return;
        }
        let line = render(self.unit, &self.last, self.before, self.started.elapsed());
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal { writeln!(err, "\r{line}\x1b[K") } else { writeln!(err, "{line}") };
    }
}

fn render(unit: &str, shown: &Shown, before: i64, elapsed: Duration) -> String {
    let Shown { done, note, .. } = shown;
    let (done, total) = (*done, shown.total.max(*done));
    let fraction = if total == 0 { 1.0 } else { done as f64 / total as f64 };
    let width = 30;
    // A cell fills only once its share is wholly done, so the bar never runs ahead.
    let filled = if total == 0 { width } else { (done * width as i64 / total) as usize };
    let bar: String = (0..width)
        .map(|i| match i.cmp(&filled) {
            std::cmp::Ordering::Less => '=',
            std::cmp::Ordering::Equal => '>',
            std::cmp::Ordering::Greater => ' ',
        })
        .collect();
    let rate = (done - before).max(0) as f64 / elapsed.as_secs_f64().max(0.001);
    let eta = if rate > 0.0 { format!("{:.0}s", (total - done) as f64 / rate) } else { "?".into() };
    let mut line = format!(
        "[{bar}] {}/{} {:>3.0}%  {} {unit}/s  ETA {eta}",
        thousands(done),
        thousands(total),
        fraction * 100.0,
        thousands(rate as i64)
    );
    if !note.is_empty() {
        line.push_str("  ");
        line.push_str(note);
    }
    line
}

pub fn thousands(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_shows_what_is_done_the_rate_and_what_is_left() {
        let shown = Shown { done: 45_000, total: 100_000, note: "3 rejected".into() };
        let line = render("rows", &shown, 0, Duration::from_secs(4));
        assert_eq!(line, "[=============>                ] 45,000/100,000  45%  11,250 rows/s  ETA 5s  3 rejected");
        let done = Shown { done: 10, total: 10, note: String::new() };
        assert_eq!(
            render("events", &done, 0, Duration::from_secs(2)),
            "[==============================] 10/10 100%  5 events/s  ETA 0s"
        );
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}

//! The results: a table for people, JSON and JUnit XML for machines, and the
//! probe catalogue as Markdown for `docs/escape-suite.md`.

use std::fmt::Write as _;

use serde::Serialize;

use crate::probes::{Category, Probe};

/// A probe's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The probe observed the secret or the forbidden effect.
    Escaped,
    /// It tried and failed.
    Contained,
    /// The probe itself could not run.
    Error,
    /// Nothing to attack in this deployment (e.g. no credentials endpoint).
    Skipped,
}

/// One probe's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Probe name.
    pub probe: String,
    /// Category name.
    pub category: String,
    /// The verdict.
    pub verdict: Verdict,
    /// One line: what was observed (escaped), the errors (contained), or
    /// why it could not run (error).
    pub evidence: String,
    /// Every attempt and its result, as the probe reported them.
    pub attempts: Vec<String>,
    /// How the task ended.
    pub ending: String,
    /// Wall-clock time of the probe, ms.
    pub duration_ms: u64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// "sandbox" or "baseline".
    pub mode: String,
    /// The endpoint attacked (sandbox) or "host".
    pub target: String,
    /// Facts worth knowing, e.g. which stand-ins were used.
    pub notes: Vec<String>,
    /// Per probe, in catalogue order.
    pub outcomes: Vec<Outcome>,
    /// Counts.
    pub escaped: usize,
    /// Counts.
    pub contained: usize,
    /// Counts.
    pub errors: usize,
    /// Counts.
    pub skipped: usize,
}

impl Report {
    /// Builds the counts.
    pub fn new(mode: &str, target: String, notes: Vec<String>, outcomes: Vec<Outcome>) -> Self {
        let count = |v| outcomes.iter().filter(|o| o.verdict == v).count();
        Self {
            mode: mode.into(),
            target,
            notes,
            escaped: count(Verdict::Escaped),
            contained: count(Verdict::Contained),
            errors: count(Verdict::Error),
            skipped: count(Verdict::Skipped),
            outcomes,
        }
    }

    /// The exit code: 0 all contained, 1 any escape, 2 errors but no escape.
    pub fn exit_code(&self) -> i32 {
        if self.escaped > 0 {
            1
        } else if self.errors > 0 {
            2
        } else {
            0
        }
    }

    /// The table for people.
    pub fn table(&self) -> String {
        let w_probe = self
            .outcomes
            .iter()
            .map(|o| o.probe.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "airlock-escape: {} run against {}",
            self.mode, self.target
        );
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        let _ = writeln!(
            s,
            "\n{:<w_probe$}  {:<13}  {:<9}  EVIDENCE",
            "PROBE", "CATEGORY", "VERDICT"
        );
        for o in &self.outcomes {
            let verdict = match o.verdict {
                Verdict::Escaped => "ESCAPED",
                Verdict::Contained => "contained",
                Verdict::Error => "ERROR",
                Verdict::Skipped => "skipped",
            };
            let _ = writeln!(
                s,
                "{:<w_probe$}  {:<13}  {:<9}  {}",
                o.probe,
                o.category,
                verdict,
                one_line(&o.evidence, 110)
            );
        }
        let _ = writeln!(
            s,
            "\n{} probes: {} escaped, {} contained, {} error, {} skipped",
            self.outcomes.len(),
            self.escaped,
            self.contained,
            self.errors,
            self.skipped
        );
        s
    }

    /// JUnit XML: one testcase per probe; escaped is a failure, error an error.
    pub fn junit(&self) -> String {
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let total_ms: u64 = self.outcomes.iter().map(|o| o.duration_ms).sum();
        let _ = writeln!(
            s,
            "<testsuites><testsuite name=\"airlock-escape-{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
            xml(&self.mode),
            self.outcomes.len(),
            self.escaped,
            self.errors,
            self.skipped,
            total_ms as f64 / 1000.0
        );
        for o in &self.outcomes {
            let _ = write!(
                s,
                "  <testcase classname=\"airlock-escape.{}\" name=\"{}\" time=\"{:.3}\">",
                xml(&o.category),
                xml(&o.probe),
                o.duration_ms as f64 / 1000.0
            );
            match o.verdict {
                Verdict::Escaped => {
                    let _ = write!(
                        s,
                        "<failure message=\"escaped: {}\" type=\"escaped\">{}</failure>",
                        xml(&one_line(&o.evidence, 200)),
                        xml(&o.attempts.join("\n"))
                    );
                }
                Verdict::Error => {
                    let _ = write!(
                        s,
                        "<error message=\"{}\" type=\"error\">{}</error>",
                        xml(&one_line(&o.evidence, 200)),
                        xml(&o.attempts.join("\n"))
                    );
                }
                Verdict::Skipped => {
                    let _ = write!(
                        s,
                        "<skipped message=\"{}\"/>",
                        xml(&one_line(&o.evidence, 200))
                    );
                }
                Verdict::Contained => {}
            }
            let _ = writeln!(
                s,
                "<system-out>{}</system-out></testcase>",
                xml(&format!(
                    "{}\n{}\nended: {}",
                    o.evidence,
                    o.attempts.join("\n"),
                    o.ending
                ))
            );
        }
        s.push_str("</testsuite></testsuites>\n");
        s
    }
}

/// The catalogue as Markdown, one table per category.
pub fn markdown(probes: &[Probe]) -> String {
    let mut s = String::new();
    for c in Category::ALL {
        let _ = writeln!(s, "### {c}\n");
        let _ = writeln!(
            s,
            "| probe | what it tries | escaped when | baseline as |\n|---|---|---|---|"
        );
        for p in probes.iter().filter(|p| p.category == c) {
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {} |",
                p.name,
                p.tries.replace('|', "\\|"),
                p.escape_if.replace('|', "\\|"),
                if p.baseline_root { "root" } else { "nobody" }
            );
        }
        s.push('\n');
    }
    s
}

/// First line of `s`, at most `max` characters.
pub fn one_line(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.chars().count() > max {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        line.to_string()
    }
}

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' => out.push(c),
            c if (c as u32) < 0x20 => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &str, verdict: Verdict) -> Outcome {
        Outcome {
            probe: name.into(),
            category: "host".into(),
            verdict,
            evidence: "read <secret> & more".into(),
            attempts: vec!["a: PermissionError(EACCES)".into()],
            ending: "COMPLETED exit 0".into(),
            duration_ms: 12,
        }
    }

    #[test]
    fn exit_code_escape_beats_error_beats_clean() {
        let r = |vs: &[Verdict]| {
            Report::new(
                "sandbox",
                "t".into(),
                vec![],
                vs.iter().map(|v| outcome("p", *v)).collect(),
            )
            .exit_code()
        };
        assert_eq!(r(&[Verdict::Contained]), 0);
        assert_eq!(r(&[Verdict::Contained, Verdict::Error]), 2);
        assert_eq!(r(&[Verdict::Escaped, Verdict::Error]), 1);
    }

    #[test]
    fn junit_marks_escape_as_failure_and_error_as_error_and_escapes_xml() {
        let r = Report::new(
            "sandbox",
            "t".into(),
            vec![],
            vec![
                outcome("a", Verdict::Escaped),
                outcome("b", Verdict::Error),
                outcome("c", Verdict::Contained),
            ],
        );
        let x = r.junit();
        assert!(x.contains("tests=\"3\" failures=\"1\" errors=\"1\""), "{x}");
        assert!(x.contains("name=\"a\""));
        assert!(x.contains("<failure message=\"escaped: read &lt;secret&gt; &amp; more\""));
        assert!(x.contains("<error message="));
        assert_eq!(x.matches("<testcase").count(), 3);
        assert!(!x.contains("<secret>"));
    }
}

#[cfg(test)]
mod docs {
    #[test]
    fn docs_list_every_probe_as_the_tool_prints_them() {
        let docs = include_str!("../../docs/escape-suite.md");
        assert!(
            docs.contains(&super::markdown(&crate::probes::all())),
            "docs/escape-suite.md is out of date: regenerate its catalogue with `airlock-escape --list-markdown`"
        );
    }
}

//! Signals as HTML: the escaping every page and feed uses, and a signal's article (its meta
//! line, summary, lede and titled sections), written once for the feeds' content and the
//! reader's pages.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::domain::signal::Signal;

/// Whether XML 1.0 allows the character (HTML forbids the same controls): tab, line feed,
/// carriage return, and everything from U+0020 on but U+FFFE and U+FFFF (surrogates are not
/// `char`s).
pub fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// Appends `text` escaped for HTML and XML text and attribute values (`&`, `<`, `>`, `"`,
/// `'`), leaving out the characters XML 1.0 forbids.
pub fn escape_into(out: &mut String, text: &str) {
    escape_with(out, text, false);
}

/// `text` escaped (see [`escape_into`]).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    escape_into(&mut out, text);
    out
}

/// `text` escaped for an XML document (the Atom feed) as [`escape`] does, and with tab, line
/// feed and carriage return as character references: an XML parser turns them into spaces in
/// an attribute value (a tag `a<TAB>b` would read `a b`) and a carriage return into a line
/// feed in text; written as references they read back as sent.
pub fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    escape_with(&mut out, text, true);
    out
}

fn escape_with(out: &mut String, text: &str, whitespace_as_references: bool) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' if whitespace_as_references => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
            c if allowed(c) => out.push(c),
            _ => {}
        }
    }
}

/// A time as the reader shows it: `6 May 2026, 18:02 UTC`.
pub fn human_time(t: &DateTime<Utc>) -> String {
    t.format("%-d %B %Y, %H:%M UTC").to_string()
}

/// The meta line of a signal, as HTML whose text reads `7/10 · Industry · 6 May 2026, 18:02
/// UTC`: the score, the category and the time, each in an element of its own.
pub fn meta_line(signal: &Signal) -> String {
    let mut out = format!(
        "<span class=\"score\">{}/10</span> · <span class=\"category\">",
        signal.score
    );
    escape_into(&mut out, &signal.category);
    let _ = write!(
        out,
        "</span> · <time datetime=\"{}\">{}</time>",
        signal
            .published_at
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        human_time(&signal.published_at)
    );
    out
}

/// Appends plain text as paragraphs: a blank line separates paragraphs, a single line break
/// stays one (`<br>`).
pub fn paragraphs_into(out: &mut String, text: &str) {
    for paragraph in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        out.push_str("<p>");
        for (i, line) in paragraph.lines().enumerate() {
            if i > 0 {
                out.push_str("<br>");
            }
            escape_into(out, line);
        }
        out.push_str("</p>");
    }
}

/// The body of a signal's article as HTML, everything from the signal escaped: the summary
/// (the analysis blurb), the lede, then each section under its heading (`<h{level}>`).
pub fn article_body(signal: &Signal, level: u8) -> String {
    let mut out = String::with_capacity(
        signal.summary.len()
            + signal.body.len()
            + signal
                .sections
                .iter()
                .map(|s| s.heading.len() + s.body.len() + 32)
                .sum::<usize>()
            + 64,
    );
    if !signal.summary.trim().is_empty() {
        out.push_str("<div class=\"summary\">");
        paragraphs_into(&mut out, &signal.summary);
        out.push_str("</div>");
    }
    paragraphs_into(&mut out, &signal.body);
    for section in &signal.sections {
        let _ = write!(out, "<section><h{level}>");
        escape_into(&mut out, &section.heading);
        let _ = write!(out, "</h{level}>");
        paragraphs_into(&mut out, &section.body);
        out.push_str("</section>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_text_stays_text_and_forbidden_characters_are_dropped() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        assert_eq!(
            escape("a\u{1}b\u{b}c\u{FFFE}d\u{FFFF}e\tf\ng"),
            "abcde\tf\ng"
        );
        assert_eq!(
            escape_xml("a\tb\nc\r\nd\u{1}&"),
            "a&#9;b&#10;c&#13;&#10;d&amp;"
        );
        for c in '\0'..=char::MAX {
            let xml_1_0 = matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..);
            assert_eq!(allowed(c), xml_1_0, "{:?}", c);
        }
    }

    #[test]
    fn text_becomes_paragraphs() {
        let mut out = String::new();
        paragraphs_into(&mut out, "one\ntwo\n\n\n three <b> \n\n");
        assert_eq!(out, "<p>one<br>two</p><p>three &lt;b&gt;</p>");
    }

    #[test]
    fn the_meta_line_reads_as_the_seed_does() {
        let t: DateTime<Utc> = "2026-05-06T18:02:00Z".parse().unwrap();
        let signal = Signal {
            id: uuid::Uuid::nil(),
            slug: "s".into(),
            title: "t".into(),
            summary: String::new(),
            body: String::new(),
            score: 7,
            category: "Industry".into(),
            published_at: t,
            sections: Vec::new(),
            tags: Vec::new(),
            source_url: None,
            created_at: t,
            updated_at: t,
        };
        assert_eq!(
            meta_line(&signal),
            "<span class=\"score\">7/10</span> · <span class=\"category\">Industry</span> · \
             <time datetime=\"2026-05-06T18:02:00Z\">6 May 2026, 18:02 UTC</time>"
        );
    }
}

//! Globs (docs/reference.md §3): `*` matches any run of characters including `/` and `:`,
//! `?` exactly one character (one Unicode scalar value); case-sensitive;
//! nothing else is special. A pattern without wildcards matches exactly.
//!
//! Matching is linear in practice and `O(pattern × text)` in the worst case
//! (the classic two-pointer algorithm that only ever backtracks to the most
//! recent `*`), so no pattern can make matching exponential.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Char(char),
    /// `?`: exactly one character.
    One,
    /// `*`: any run of characters (consecutive stars are collapsed).
    Star,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    /// None when the pattern has no wildcard: plain string equality.
    toks: Option<Box<[Tok]>>,
}

impl Glob {
    /// Compiles a pattern. The empty pattern is rejected (it would match only
    /// the empty string, which is never a meaningful resource name).
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("empty glob pattern".to_string());
        }
        if !pattern.contains(['*', '?']) {
            return Ok(Glob { source: pattern.to_string(), toks: None });
        }
        let mut toks: Vec<Tok> = Vec::with_capacity(pattern.len());
        for c in pattern.chars() {
            let tok = match c {
                '*' => Tok::Star,
                '?' => Tok::One,
                c => Tok::Char(c),
            };
            if tok == Tok::Star && toks.last() == Some(&Tok::Star) {
                continue;
            }
            toks.push(tok);
        }
        Ok(Glob { source: pattern.to_string(), toks: Some(toks.into_boxed_slice()) })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the pattern contains `*` or `?`.
    pub fn has_wildcards(&self) -> bool {
        self.toks.is_some()
    }

    pub fn matches(&self, text: &str) -> bool {
        match &self.toks {
            None => self.source == text,
            Some(toks) => match_toks(toks, text),
        }
    }
}

/// Two-pointer matching: on a mismatch, retry from the last `*`, letting it
/// swallow one more character. Each text position is revisited at most once
/// per star restart, and only the most recent star is ever retried.
fn match_toks(toks: &[Tok], text: &str) -> bool {
    let mut p = 0usize; // index into toks
    let mut t = 0usize; // byte index into text
                        // (token index after the star, text byte index the star's run ends at)
    let mut star: Option<(usize, usize)> = None;
    loop {
        let next = text[t..].chars().next();
        match (toks.get(p), next) {
            (Some(Tok::Star), _) => {
                p += 1;
                star = Some((p, t));
                continue;
            }
            (Some(Tok::One), Some(c)) => {
                p += 1;
                t += c.len_utf8();
                continue;
            }
            (Some(Tok::Char(pc)), Some(c)) if *pc == c => {
                p += 1;
                t += c.len_utf8();
                continue;
            }
            (None, None) => return true,
            _ => {}
        }
        // Mismatch (or one side exhausted): backtrack to the last star.
        match star {
            Some((sp, st)) => match text[st..].chars().next() {
                Some(c) => {
                    let st = st + c.len_utf8();
                    star = Some((sp, st));
                    p = sp;
                    t = st;
                }
                None => return false,
            },
            None => return false,
        }
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.source)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn m(p: &str, t: &str) -> bool {
        Glob::new(p).expect("valid glob").matches(t)
    }

    #[test]
    fn empty_pattern_is_rejected() {
        assert!(Glob::new("").is_err());
    }

    #[test]
    fn without_wildcards_matches_exactly() {
        assert!(m("amazon.titan-embed-text-v2:0", "amazon.titan-embed-text-v2:0"));
        assert!(!m("amazon.titan-embed-text-v2:0", "amazon.titan-embed-text-v2:01"));
        assert!(!m("amazon.titan-embed-text-v2:0", "amazon.titan-embed-text-v2"));
        assert!(!Glob::new("abc").expect("valid").has_wildcards());
    }

    #[test]
    fn star_matches_any_run_including_slash_and_colon() {
        assert!(m("anthropic.claude-3-haiku-*", "anthropic.claude-3-haiku-20240307-v1:0"));
        assert!(m("arn:aws:bedrock:*", "arn:aws:bedrock:us-east-1::foundation-model/x"));
        assert!(m("AGENTABCDE/*", "AGENTABCDE/ALIAS1"));
        assert!(m("AGENTABCDE/*", "AGENTABCDE/"));
        assert!(!m("AGENTABCDE/*", "AGENTABCDEF/ALIAS1"));
        assert!(m("*", ""));
        assert!(m("*", "anything/at:all"));
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "aXbYbZc"));
        assert!(!m("a*b*c", "aXbYbZ"));
        assert!(m("**a**", "xxaxx"));
        assert!(m("*.tar.gz", "acme.tar.gz"));
        assert!(!m("*.tar.gz", "acme.tar.gzip"));
    }

    #[test]
    fn question_mark_is_exactly_one_unicode_scalar() {
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(!m("a?c", "abbc"));
        assert!(m("a?c", "aéc"));
        assert!(m("a?c", "a😀c"));
        assert!(m("??", "é😀"));
        assert!(!m("???", "é😀"));
    }

    #[test]
    fn case_sensitive_and_no_other_metacharacters() {
        assert!(!m("Acme*", "acme-1"));
        assert!(m("[ab]", "[ab]"));
        assert!(!m("[ab]", "a"));
        assert!(m("a.b", "a.b"));
        assert!(!m("a.b", "axb"));
        assert!(m("\\*", "\\anything"));
        assert!(m("{tenant}", "{tenant}"));
    }

    #[test]
    fn star_then_suffix_backtracks_correctly() {
        assert!(m("*ab", "aab"));
        assert!(m("*aab", "aaab"));
        assert!(m("a*a", "aa"));
        assert!(!m("a*a", "a"));
        assert!(m("*?", "x"));
        assert!(!m("*?", ""));
        assert!(m("?*?", "xy"));
    }

    #[test]
    fn pathological_patterns_run_fast() {
        let text = "a".repeat(20_000);
        let pat = format!("{}b", "a*".repeat(50));
        let start = Instant::now();
        assert!(!m(&pat, &text));
        let pat2 = "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*ab";
        assert!(!m(pat2, &text));
        let pat3 = "*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?b";
        assert!(!m(pat3, &text));
        assert!(m(&format!("{}*", "a*".repeat(50)), &text));
        assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
    }

    #[test]
    fn as_str_and_display_return_the_source() {
        let g = Glob::new("x*").expect("valid");
        assert_eq!(g.as_str(), "x*");
        assert_eq!(g.to_string(), "x*");
    }
}

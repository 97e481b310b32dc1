//! Validation of the free text that people type (labels, names, reasons, descriptions).
//!
//! Text ends up in the dashboard (English and Arabic), in audit exports and in logs, so beyond
//! length limits we refuse characters that let a value disguise itself or forge log lines:
//! C0/C1 control characters and the Unicode bidirectional embedding, override and isolate
//! controls (the "Trojan Source" family). Ordinary right-to-left text and the LRM/RLM marks
//! remain allowed.

/// Why a piece of text was refused. Wrapped by each aggregate's error, which names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters long (got {len})")]
    TooLong { max: usize, len: usize },
    #[error("must not contain control or bidirectional-override characters")]
    ForbiddenCharacter,
}

fn is_forbidden(c: char, allow_line_breaks: bool) -> bool {
    if allow_line_breaks && matches!(c, '\n' | '\t') {
        return false;
    }
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn check(value: &str, max: usize, allow_line_breaks: bool) -> Result<String, TextError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(TextError::Empty);
    }
    let len = trimmed.chars().count();
    if len > max {
        return Err(TextError::TooLong { max, len });
    }
    if trimmed.chars().any(|c| is_forbidden(c, allow_line_breaks)) {
        return Err(TextError::ForbiddenCharacter);
    }
    Ok(trimmed.to_owned())
}

/// A one-line value (label, name, reason): trimmed, 1..=`max` characters.
pub(crate) fn single_line(value: &str, max: usize) -> Result<String, TextError> {
    check(value, max, false)
}

/// An optional multi-line value (description): trimmed; blank means absent.
pub(crate) fn optional_multi_line(value: Option<&str>, max: usize) -> Result<Option<String>, TextError> {
    match value {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => check(v, max, true).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_counts_characters_not_bytes() {
        assert_eq!(single_line("  laptop  ", 10).unwrap(), "laptop");
        // five Arabic letters are ten bytes but five characters
        assert_eq!(single_line("حاسوب", 5).unwrap(), "حاسوب");
        assert_eq!(single_line("حاسوب1", 5), Err(TextError::TooLong { max: 5, len: 6 }));
    }

    #[test]
    fn refuses_blank_control_and_bidi_override() {
        assert_eq!(single_line("   ", 10), Err(TextError::Empty));
        assert_eq!(single_line("a\nb", 10), Err(TextError::ForbiddenCharacter));
        assert_eq!(single_line("evil\u{202E}gpj.exe", 20), Err(TextError::ForbiddenCharacter));
        assert_eq!(single_line("a\u{2066}b", 20), Err(TextError::ForbiddenCharacter));
        // the right-to-left mark is legitimate in mixed Arabic/Latin text
        assert!(single_line("جهاز\u{200F} A", 20).is_ok());
    }

    #[test]
    fn descriptions_may_span_lines_and_blank_means_absent() {
        assert_eq!(
            optional_multi_line(Some("line one\nline two"), 100).unwrap(),
            Some("line one\nline two".to_owned())
        );
        assert_eq!(optional_multi_line(Some("  \n "), 100).unwrap(), None);
        assert_eq!(optional_multi_line(None, 100).unwrap(), None);
        assert_eq!(optional_multi_line(Some("a\u{7}b"), 100), Err(TextError::ForbiddenCharacter));
    }
}

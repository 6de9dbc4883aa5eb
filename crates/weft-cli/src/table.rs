//! Plain-text tables and JSON for terminal output.

use std::fmt::Write as _;

/// Renders rows under headers in left-aligned columns two spaces apart; the
/// last column is not padded. Every line ends with a newline.
pub(crate) fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            if i + 1 == widths.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<w$}");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// Writes `value` as pretty JSON, for `--json`.
pub(crate) fn print_json<T: serde::Serialize>(
    out: &mut impl std::io::Write,
    value: &T,
) -> crate::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| crate::Failure(e.to_string()))?;
    writeln!(out, "{text}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let rows = vec![
            vec!["*".to_owned(), "die_roller".to_owned(), "1.0.0".to_owned()],
            vec![String::new(), "a".to_owned(), "10.0.0".to_owned()],
        ];
        assert_eq!(
            render(&["MAIN", "NAME", "VERSION"], &rows),
            "MAIN  NAME        VERSION\n*     die_roller  1.0.0\n      a           10.0.0\n"
        );
    }
}

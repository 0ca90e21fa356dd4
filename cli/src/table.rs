//! Aligned text tables for people: a header row in capitals, columns padded to their widest
//! cell (counted in characters), two spaces between columns, no trailing spaces.

/// A table under construction.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_uppercase()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank, extra cells are kept.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, each ending in a newline.
    pub fn render(&self) -> String {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.header.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map_or("", String::as_str);
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `-` for a missing value.
pub fn or_dash(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => v.to_string(),
        _ => "-".to_string(),
    }
}

/// An RFC 3339 time shortened for a table: `2026-03-01T12:34:56.789Z` → `2026-03-01 12:34:56`.
pub fn short_time(value: Option<&str>) -> String {
    match value {
        Some(v) if v.len() >= 19 => v[..19].replace('T', " "),
        other => or_dash(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let mut t = Table::new(&["id", "name"]);
        t.row(["abc", "first"]);
        t.row(["a", "é"]);
        t.row(["abcdef"]);
        assert_eq!(
            t.render(),
            "ID      NAME\nabc     first\na       é\nabcdef\n"
        );
    }

    #[test]
    fn times_shorten() {
        assert_eq!(
            short_time(Some("2026-03-01T12:34:56.789Z")),
            "2026-03-01 12:34:56"
        );
        assert_eq!(short_time(None), "-");
        assert_eq!(or_dash(Some("")), "-");
    }
}

//! A plain Markdown table printer, so results paste straight into `bench/README.md`.

/// Rows of cells under a header, printed as a Markdown table with aligned columns.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub fn new<S: AsRef<str>>(header: &[S]) -> Self {
        Self {
            header: header.iter().map(|h| h.as_ref().to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (missing cells print empty).
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// The table as Markdown.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let cell = |row: &[String], i: usize| row.get(i).cloned().unwrap_or_default();
        let widths: Vec<usize> = (0..columns)
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| cell(r, i).chars().count())
                    .chain([self.header[i].chars().count(), 3])
                    .max()
                    .unwrap_or(3)
            })
            .collect();
        let line = |row: &[String]| {
            let cells: Vec<String> = (0..columns)
                .map(|i| format!("{:<w$}", cell(row, i), w = widths[i]))
                .collect();
            format!("| {} |\n", cells.join(" | "))
        };
        let mut out = line(&self.header);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn columns_are_aligned_and_short_rows_padded() {
        let mut table = Table::new(&["name", "ms"]);
        table.row(["ours", "12.5"]);
        table.row(["vips"]);
        assert_eq!(
            table.render(),
            "| name | ms   |\n|------|------|\n| ours | 12.5 |\n| vips |      |\n"
        );
    }
}
